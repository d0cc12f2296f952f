"""Figures of theory objects: Figure 3 (H′_α over rank × variance scale, rebuilt from stored
spectrum runs) and the AᵀA spectrum against Marchenko–Pastur. A computed quantity against
measured robustness (the matching of theory and training runs, Spearman's ρ) is the report's:
`ttrlab.report.matching`, `ttrlab.report.theory.theory_vs_measured`.

Figure 3's axes: the variance scale k is on x (log), the rank r on y (log₂), and the default
kaiming scale k = 1/3 is the red dashed *vertical* line. (The official code draws the map with
the two axes swapped relative to its own labels.)
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ttrlab.core.errors import UserError
from ttrlab.core.io import save_figure
from ttrlab.methods.init import KAIMING_DEFAULT_K


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fig3(grid: dict, path: str | Path, svg_path: str | Path | None = None) -> Path:
    """Two panels, normalized and literal H′_α, from `spectrum.h_prime_map` output (or the same
    keys rebuilt from a sweep by `fig3_grid_from_results`); also an SVG copy if `svg_path`."""
    plt = pyplot()
    ranks, scales = np.array(grid["ranks"]), np.array(grid["scales"])
    alpha = grid["alpha"]
    label = "∞" if isinstance(alpha, float) and math.isinf(alpha) else f"{alpha:g}"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, variant in zip(axes, ("normalized", "literal")):
        values = np.array(grid[variant], dtype=float)
        mesh = ax.pcolormesh(scales, ranks, values, shading="nearest", cmap="viridis")
        ax.set_xscale("log")
        ax.set_yscale("log", base=2)
        ax.set_yticks(ranks)
        ax.set_yticklabels([str(r) for r in ranks])
        ax.axvline(grid.get("default_scale", KAIMING_DEFAULT_K), color="red", linestyle="--", linewidth=1.5,
                   label="kaiming default k = 1/3")
        ax.set_xlabel("variance scale k  (Var(A) = k / n)")
        ax.set_ylabel("LoRA rank r")
        title = "p = λ/Σλ (textbook)" if variant == "normalized" else "raw λ (Eq. 18 as printed)"
        ax.set_title(f"H′_{label}, {title}")
        fig.colorbar(mesh, ax=ax, label=f"H′_{label} (nats)")
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Figure 3: eigenvalues of AᵀA, A ∈ R^(r×{grid['fan_in']}), init {grid['strategy']}")
    path = save_figure(fig, path, dpi=130)
    if svg_path is not None:
        save_svg(fig, svg_path)
    plt.close(fig)
    return path


def save_svg(fig, path: str | Path) -> Path:
    """SVG with text kept as text and a fixed hash salt (the same figure gives the same file)."""
    import matplotlib

    path = Path(path)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": path.stem}):
        return save_figure(fig, path)


def plot_spectrum_vs_mp(eigenvalues: np.ndarray, rank: int, fan_in: int, variance: float, path: str | Path, title: str = "") -> Path:
    """Histogram of the nonzero eigenvalues of AᵀA with the Marchenko–Pastur density and the
    value σ²·n that Theorem 3.4 states."""
    from ttrlab.theory.spectrum import marchenko_pastur_bounds, marchenko_pastur_density

    plt = pyplot()
    nonzero = np.sort(eigenvalues)[::-1][: min(rank, fan_in)]
    low, high = marchenko_pastur_bounds(rank, fan_in, variance)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.hist(nonzero, bins=max(10, min(60, len(nonzero) // 4)), density=True, alpha=0.6, label="measured")
    x = np.linspace(low * 0.9, high * 1.1, 400)
    ax.plot(x, marchenko_pastur_density(x, rank, fan_in, variance), "k-", label="Marchenko–Pastur")
    ax.axvline(variance * fan_in, color="red", linestyle="--", label="Thm 3.4: σ²·n")
    ax.axvline(1.0, color="grey", linestyle=":", label="1 (M_Δ ⪯ 0 needs λ ≤ 1)")
    ax.set_xlabel("nonzero eigenvalue of AᵀA")
    ax.set_ylabel("density")
    ax.set_title(title or f"r = {rank}, n = {fan_in}, σ²·n = {variance * fan_in:.3g}")
    ax.legend(fontsize=8)
    path = save_figure(fig, path, dpi=130)
    plt.close(fig)
    return path


# ---- results from the store ------------------------------------------------------------------
def metric(document: dict, name: str) -> float | None:
    """A metric by dotted name from a result document (nested "metrics") or a store row (flat)."""
    metrics = document.get("metrics") or {}
    if name in metrics:
        value = metrics[name]
        return None if value is None else float(value)
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if node is None or isinstance(node, dict) else float(node)


def spectrum_groups(results: Iterable[dict]) -> dict[tuple[str, int], list[dict]]:
    """Theory runs with quantity 'spectrum', grouped by (init strategy, fan_in): one Figure 3
    map per group (maps over different n or strategies are different figures)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        c = r["config"]
        if c.get("quantity") == "spectrum" and c.get("fan_in") is not None:
            groups.setdefault((str(c.get("init")), int(c["fan_in"])), []).append(r)
    return dict(sorted(groups.items()))


def fig3_grid_from_results(results: Iterable[dict], alpha: float = 1.0) -> dict:
    """Rebuild the Figure 3 grid from theory runs with quantity 'spectrum' (e.g. a sweep over
    rank × init_scale) of one init strategy and fan_in (see `spectrum_groups`); cells averaged
    over seeds, missing cells NaN."""
    label = "inf" if math.isinf(alpha) else f"{alpha:g}"
    cells: dict[tuple[int, float], list[tuple[float, float]]] = {}
    kinds: set[tuple[Any, Any]] = set()
    for r in results:
        c = r["config"]
        if c.get("quantity") != "spectrum":
            continue
        n = metric(r, f"h_prime_{label}_normalized")
        lit = metric(r, f"h_prime_{label}_literal")
        k = metric(r, "scale_k")
        if n is None or lit is None or k is None:
            continue
        cells.setdefault((int(c["rank"]), round(k, 12)), []).append((n, lit))
        kinds.add((c.get("init"), c.get("fan_in")))
    if not cells:
        raise UserError("no theory results with quantity 'spectrum' to draw Figure 3 from")
    if len(kinds) > 1:
        shown = ", ".join(f"{i}/n={f}" for i, f in sorted(kinds, key=str))
        raise UserError(f"spectrum results mix init strategies or fan_in ({shown}); draw one map per group (spectrum_groups)")
    strategy, fan_in = next(iter(kinds))
    ranks = sorted({r for r, _ in cells})
    scales = sorted({k for _, k in cells})
    normalized = np.full((len(ranks), len(scales)), np.nan)
    literal = np.full((len(ranks), len(scales)), np.nan)
    for (r, k), values in cells.items():
        i, j = ranks.index(r), scales.index(k)
        normalized[i, j] = np.mean([v[0] for v in values])
        literal[i, j] = np.mean([v[1] for v in values])
    return {"ranks": ranks, "scales": scales, "fan_in": fan_in, "alpha": alpha, "strategy": strategy,
            "default_scale": KAIMING_DEFAULT_K, "normalized": normalized.tolist(), "literal": literal.tolist(),
            "seeds_per_cell": max(len(v) for v in cells.values())}
