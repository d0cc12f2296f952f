"""What every report figure shares: matplotlib on the Agg backend, the series colours and markers,
one legend per figure, and a title that fits: `finish` wraps the title to the figure's width and
leaves room above the panels for its lines and below them for the legend's rows, so no text of a
figure is cut off at its edge, however few panels it has."""
from __future__ import annotations

import math
from typing import Any

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
TITLE_SIZE = 11
MARGIN = 0.02  # of the figure's width, each side, kept free of the title
ROOM = 0.9 * 72  # points of a figure's height its size allows for the title and the legend


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def style(i: int) -> dict[str, str]:
    """The colour and marker of the i-th series of a figure."""
    return {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)]}


def legend_entries(axes) -> tuple[list[Any], list[str]]:
    """One legend entry per label over all panels (a figure's shared legend)."""
    handles, names = [], []
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    return handles, names


def wrap_to_width(fig, text: str, fontsize: float, width: float) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` (a fraction of the figure's
    width) as the figure's renderer draws them at `fontsize`; a word wider than that stays whole."""
    renderer = fig.canvas.get_renderer()
    probe = fig.text(0, 0, "", fontsize=fontsize)
    limit = width * fig.bbox.width
    lines: list[str] = []
    try:
        for word in text.split():
            if lines:
                probe.set_text(f"{lines[-1]} {word}")
                if probe.get_window_extent(renderer).width <= limit:
                    lines[-1] = f"{lines[-1]} {word}"
                    continue
            lines.append(word)
    finally:
        probe.remove()
    return lines


def _legend(fig, handles, names, columns: int, fontsize: float):
    """The figure's legend at the bottom in as many columns (at most `columns`) as fit its width."""
    renderer = fig.canvas.get_renderer()
    for ncol in range(max(1, min(len(names), columns)), 0, -1):
        legend = fig.legend(handles, names, loc="lower center", ncol=ncol, frameon=False, fontsize=fontsize)
        if ncol == 1 or legend.get_window_extent(renderer).width <= (1 - 2 * MARGIN) * fig.bbox.width:
            return legend, ncol
        legend.remove()
    raise AssertionError("unreachable")


def finish(fig, title: str, axes=None, legend_columns: int = 4, legend_size: float = 9,
           title_size: float = TITLE_SIZE) -> None:
    """Lay out a drawn figure: its title wrapped to the figure's width on top, one legend of every
    labelled series (from `axes`) at the bottom in as many columns as fit, and the panels in
    between (`tight_layout`). Where the title's lines and the legend's rows need more than the
    `ROOM` every figure's size allows for them, the figure grows by the difference, so that the
    panels keep their height."""
    lines = wrap_to_width(fig, title, title_size, 1 - 2 * MARGIN)
    top = len(lines) * 1.35 * title_size + 8  # points
    bottom = 0.0
    if axes is not None:
        handles, names = legend_entries(axes)
        if names:
            _, ncol = _legend(fig, handles, names, legend_columns, legend_size)
            bottom = math.ceil(len(names) / ncol) * 1.45 * legend_size + 8
    height = fig.get_figheight() * 72
    if top + bottom > ROOM:
        height += top + bottom - ROOM
        fig.set_figheight(height / 72)
    suptitle = fig.suptitle("\n".join(lines), fontsize=title_size, y=1 - 4 / height, va="top")
    suptitle.set_in_layout(False)  # its room is the rect's top; tight_layout would add it a second time
    fig.tight_layout(rect=(0, bottom / height, 1, 1 - top / height))
