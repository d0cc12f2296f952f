"""The report folder as the sections write into it: every file atomically (`core.io`), figures as
PNG and SVG (text kept as text, the same figure the same bytes) with the numbers behind each
collected for figures.json, and nothing left of an earlier report that this one does not hold.

The folder is ttrlab's (`core.io.check_output_folder` / `own_folder`: new, empty, or written by
ttrlab before); a rebuild replaces the files the report writes and removes those of its own kinds
that this database no longer gives (a side file of a section that is absent now, a figure no
longer drawn), so no stale table or figure is read as this database's."""
from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from ttrlab.core.io import save_figure, write_text_atomic

FIGURES = "figures"
NUMBERS = "figures.json"
FIGURE_SUFFIXES = (".png", ".svg")


class ReportFolder:
    def __init__(self, path: Path):
        self.path = path
        self.figures = path / FIGURES
        self.numbers: dict[str, Any] = {}  # figure stem -> the numbers drawn (figures.json)
        self.written: set[Path] = set()

    def write(self, name: str, text: str) -> Path:
        """A side file of the report (a table as CSV or Markdown, the claims' verdicts, ...)."""
        path = write_text_atomic(self.path / name, text)
        self.written.add(path)
        return path

    def figure(self, fig, stem: str, numbers: Any = None) -> dict[str, str]:
        """Save a drawn figure as figures/<stem>.png and .svg and close it; its numbers go to
        figures.json. Returns what the page embeds (`embedded`)."""
        import matplotlib
        import matplotlib.pyplot as plt

        self.figures.mkdir(exist_ok=True)
        paths = {"png": self.figures / f"{stem}.png", "svg": self.figures / f"{stem}.svg"}
        save_figure(fig, paths["png"], dpi=110)
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": stem}):
            save_figure(fig, paths["svg"])
        plt.close(fig)
        if numbers is not None:
            self.numbers[stem] = numbers
        return self.embedded(paths)

    def embedded(self, paths: dict[str, Path]) -> dict[str, str]:
        """A figure's files (relative to the report) and its SVG, base64, for the page."""
        self.written.update(paths.values())
        return {"files": ", ".join(str(p.relative_to(self.path)) for p in paths.values()),
                "svg_b64": base64.b64encode(paths["svg"].read_bytes()).decode("ascii")}

    def finish(self, side_files: set[str]) -> None:
        """Write figures.json (when a figure was drawn) and remove what an earlier report left:
        the side files of `side_files` (every name a section may write) and the figures that
        this report did not write."""
        if self.numbers:
            self.write(NUMBERS, json.dumps(self.numbers, indent=1, default=_json_default) + "\n")
        for name in (*side_files, NUMBERS):
            path = self.path / name
            if path not in self.written and path.is_file():
                path.unlink()
        if self.figures.is_dir():
            for path in self.figures.iterdir():
                if path.suffix in FIGURE_SUFFIXES and path.is_file() and path not in self.written:
                    path.unlink()
            if not any(self.figures.iterdir()):
                self.figures.rmdir()


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
