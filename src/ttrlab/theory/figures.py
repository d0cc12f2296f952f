"""Figures of the theory part: Figure 3 (H′_α over rank × variance scale), the AᵀA spectrum
against Marchenko–Pastur, and a computed quantity against measured robustness (Spearman ρ).

Figure 3's axes: the variance scale k is on x (log), the rank r on y (log₂), and the default
kaiming scale k = 1/3 is the red dashed *vertical* line. (The official code draws the map with
the two axes swapped relative to its own labels.)
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ttrlab.errors import UserError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fig3(grid: dict, path: str | Path, svg_path: str | Path | None = None) -> Path:
    """Two panels, normalized and literal H′_α, from `spectrum.h_prime_map` output (or the same
    keys rebuilt from a sweep by `fig3_grid_from_results`); also an SVG copy if `svg_path`."""
    plt = _pyplot()
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
        ax.axvline(grid.get("default_scale", 1 / 3), color="red", linestyle="--", linewidth=1.5,
                   label="kaiming default k = 1/3")
        ax.set_xlabel("variance scale k  (Var(A) = k / n)")
        ax.set_ylabel("LoRA rank r")
        title = "p = λ/Σλ (textbook)" if variant == "normalized" else "raw λ (Eq. 18 as printed)"
        ax.set_title(f"H′_{label}, {title}")
        fig.colorbar(mesh, ax=ax, label=f"H′_{label} (nats)")
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Figure 3: eigenvalues of AᵀA, A ∈ R^(r×{grid['fan_in']}), init {grid['strategy']}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    if svg_path is not None:
        save_svg(fig, svg_path)
    plt.close(fig)
    return path


def save_svg(fig, path: str | Path) -> Path:
    """SVG with text kept as text and a fixed hash salt (the same figure gives the same file)."""
    import matplotlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": path.stem}):
        fig.savefig(path)
    return path


def plot_spectrum_vs_mp(eigenvalues: np.ndarray, rank: int, fan_in: int, variance: float, path: str | Path, title: str = "") -> Path:
    """Histogram of the nonzero eigenvalues of AᵀA with the Marchenko–Pastur density and the
    value σ²·n that Theorem 3.4 states."""
    from ttrlab.theory.spectrum import marchenko_pastur_bounds, marchenko_pastur_density

    plt = _pyplot()
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
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
            "default_scale": 1 / 3, "normalized": normalized.tolist(), "literal": literal.tolist(),
            "seeds_per_cell": max(len(v) for v in cells.values())}


# ---- theory vs measured robustness -----------------------------------------------------------
# The matching rule. A theory run and a training run describe the same configuration when they
# agree on every key below that shapes the model at initialisation θ₀, the data or the attack
# (LoRA knobs count only for LoRA) — and they are paired seed by seed: the theory at seed s is
# computed at exactly the θ₀ (head, LoRA A) and on the data subset of the training run with
# seed s. Training-only knobs (lr, steps, batch size, eval size, ...) are not in the theory
# config; the report keeps training runs that differ in them apart (one comparison each).
MATCH_KEYS = ("task", "model", "data_source", "method", "rank", "alpha", "target_modules", "init", "init_scale",
              "attack", "rate", "trigger", "trigger_position", "target_label", "attack_options",
              "train_size", "max_length")
DEFAULT_MATCH = MATCH_KEYS
ATTACK_KEYS = ("attack", "rate", "trigger", "trigger_position", "target_label", "attack_options")
_LORA_ONLY = ("rank", "alpha", "lora_dropout", "target_modules", "init", "init_scale")
MEASURES = ("asr", "clean_accuracy", "clean_accuracy_drop")


def match_key(config: dict, on: Sequence[str] = MATCH_KEYS) -> tuple:
    """The configuration a run stands for, seed excluded (LoRA knobs None for FF)."""
    return tuple(None if (config.get("method") == "ff" and k in _LORA_ONLY) else _hashable(config.get(k)) for k in on)


def _hashable(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return round(float(value), 9)
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, sort_keys=True, default=str)
    return value


def is_clean(config: dict) -> bool:
    """Clean training: no attack, or any attack at rate 0 (nothing poisoned)."""
    return config.get("attack") == "none" or float(config.get("rate") or 0) == 0


def measure_for(attack: str) -> str:
    """The measured robustness the paper uses for an attack: accuracy drop for untargeted
    poisoning (UPA), attack success rate for the backdoor attacks."""
    return "clean_accuracy_drop" if attack == "upa" else "asr"


def theory_value(document: dict, quantity: str) -> float | None:
    """A theory metric by name; `<name>_without_head` is the method's own parameters without the
    classification head: `<name>_body_only` for FF, `<name>_adapters_only` for LoRA."""
    if quantity.endswith("_without_head"):
        base = quantity[: -len("_without_head")]
        part = "body_only" if document["config"].get("method") == "ff" else "adapters_only"
        return metric(document, f"{base}_{part}")
    return metric(document, quantity)


def measured_by_seed(training: Iterable[dict], measure: str, on: Sequence[str] = MATCH_KEYS) -> dict[tuple, dict[Any, float]]:
    """{match key: {seed: value}} from training runs (several runs of one key and seed are
    averaged). 'asr' and 'clean_accuracy' are the run's own metrics; 'clean_accuracy_drop' is
    the clean accuracy of the clean run (no attack or rate 0) of the same configuration and seed
    minus the clean accuracy under the attack — a seed whose clean run is missing is left out."""
    if measure not in MEASURES:
        raise UserError(f"unknown measure {measure!r}; allowed: {', '.join(MEASURES)}")
    training = list(training)
    values: dict[tuple, dict[Any, list[float]]] = {}
    if measure == "clean_accuracy_drop":
        no_attack = {k: None for k in ATTACK_KEYS}
        clean: dict[tuple, dict[Any, list[float]]] = {}
        for r in training:
            acc = metric(r, "clean.accuracy")
            if is_clean(r["config"]) and acc is not None:
                clean.setdefault(match_key({**r["config"], **no_attack}, on), {}).setdefault(r["config"].get("seed"), []).append(acc)
        for r in training:
            acc = metric(r, "clean.accuracy")
            if is_clean(r["config"]) or acc is None:
                continue
            base = clean.get(match_key({**r["config"], **no_attack}, on), {}).get(r["config"].get("seed"))
            if base:
                values.setdefault(match_key(r["config"], on), {}).setdefault(r["config"].get("seed"), []).append(float(np.mean(base)) - acc)
    else:
        name = {"asr": "asr", "clean_accuracy": "clean.accuracy"}[measure]
        for r in training:
            value = metric(r, name)
            if value is not None:
                values.setdefault(match_key(r["config"], on), {}).setdefault(r["config"].get("seed"), []).append(value)
    return {k: {seed: float(np.mean(v)) for seed, v in by_seed.items()} for k, by_seed in values.items()}


def point_label(config: dict) -> str:
    method = "FF" if config.get("method") == "ff" else f"LoRA r={config.get('rank')}"
    if config.get("method") != "ff":
        if config.get("init") not in (None, "kaiming_uniform"):
            method += f" {config['init']}"
        if config.get("init_scale") is not None:
            method += f" k={config['init_scale']:g}"
    rate = config.get("rate")  # "rate" in words: ρ is Spearman's in these figures
    return f"{method} {config.get('attack')} {100 * rate:g}%" if isinstance(rate, (int, float)) else method


def pair_points(theory: Iterable[dict], training: Iterable[dict], quantity: str, measure: str,
                on: Sequence[str] = MATCH_KEYS) -> list[dict[str, Any]]:
    """One point per configuration that theory and training share: the computed `quantity` and
    the measured robustness, each the mean over the seeds that both sides hold."""
    computed: dict[tuple, dict[Any, list[float]]] = {}
    configs: dict[tuple, dict] = {}
    for r in theory:
        value = theory_value(r, quantity)
        if value is None or not math.isfinite(value):
            continue
        key = match_key(r["config"], on)
        computed.setdefault(key, {}).setdefault(r["config"].get("seed"), []).append(value)
        configs.setdefault(key, r["config"])
    measured = measured_by_seed(training, measure, on)
    points = []
    for key, by_seed in computed.items():
        seeds = sorted(set(by_seed) & set(measured.get(key, {})), key=str)
        if not seeds:
            continue
        points.append({
            "key": dict(zip(on, key)),
            "label": point_label(configs[key]),
            "method": configs[key].get("method"),
            "seeds": seeds,
            "computed": float(np.mean([np.mean(by_seed[s]) for s in seeds])),
            "measured": float(np.mean([measured[key][s] for s in seeds])),
        })
    return sorted(points, key=lambda p: (p["method"] != "ff", p["label"]))


EXACT_PERMUTATION_MAX_N = 8  # n! ≤ 40,320 pairings


def spearman(points: Sequence[dict]) -> dict[str, Any]:
    """Spearman's ρ of computed vs measured over the points, scipy's p-value (t approximation),
    and for n ≤ 8 the exact two-sided permutation p-value (all n! pairings; at n = 4 it cannot
    go below 2/24). n < 4 is flagged as not informative; n < 3 or a constant side gives no ρ."""
    from scipy.stats import spearmanr

    n = len(points)
    out: dict[str, Any] = {"n": n, "rho": None, "p_value": None, "p_exact": None, "informative": n >= 4}
    if n < 3:
        return out
    x = np.array([p["computed"] for p in points])
    y = np.array([p["measured"] for p in points])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    rho, p = spearmanr(x, y)
    out["rho"], out["p_value"] = float(rho), float(p)
    if n <= EXACT_PERMUTATION_MAX_N:
        out["p_exact"] = exact_spearman_p(x, y)
    return out


def exact_spearman_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact permutation p-value of Spearman's ρ: the share of all n! pairings of the
    ranks of x with those of y whose |ρ| is at least the observed one (ties: average ranks)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    perms = rx[np.array(list(itertools.permutations(range(len(x)))))]
    centred = perms - perms.mean(axis=1, keepdims=True)
    cy = ry - ry.mean()
    rhos = centred @ cy / (np.sqrt((centred**2).sum(axis=1)) * math.sqrt(float(cy @ cy)))
    observed = abs(float(rhos[0]))  # permutation 0 is the identity: the observed pairing
    return float(np.mean(np.abs(rhos) >= observed - 1e-12))


def correlation_text(stats: dict[str, Any]) -> str:
    """'ρ = 0.80, p = 0.20 (exact 0.33), n = 4' — or why there is no (informative) ρ."""
    n = stats["n"]
    if stats["rho"] is None:
        return f"ρ undefined (n = {n}{', a constant side' if n >= 3 else ''})"
    text = f"ρ = {stats['rho']:.2f}, p = {stats['p_value']:.2g}"
    if stats.get("p_exact") is not None:
        text += f" (exact {stats['p_exact']:.2g})"
    text += f", n = {n}"
    if not stats["informative"]:
        text += " — not informative (n < 4)"
    return text


def draw_points(ax, points: Sequence[dict], stats: dict[str, Any], xlabel: str, ylabel: str) -> None:
    """One scatter panel: FF orange, LoRA blue, each point labelled (to the left of points in the
    right half, so labels stay inside), ρ / p / n as the panel's title."""
    xs = [p["computed"] for p in points]
    middle = (min(xs) + max(xs)) / 2
    for point in points:
        right = len(points) > 1 and point["computed"] > middle
        ax.scatter(point["computed"], point["measured"], color="C1" if point["method"] == "ff" else "C0", s=28, zorder=3)
        ax.annotate(point["label"], (point["computed"], point["measured"]), fontsize=6.5, xytext=(-4 if right else 4, 3),
                    textcoords="offset points", ha="right" if right else "left")
    ax.margins(x=0.12, y=0.15)
    ax.set_title(correlation_text(stats), fontsize=7.5)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def theory_vs_measured(
    theory: Iterable[dict],
    training: Iterable[dict],
    quantity: str = "m_prime",
    measure: str = "asr",
    on: Sequence[str] = MATCH_KEYS,
    path: str | Path | None = None,
) -> dict[str, Any]:
    """Pair each theory config with the training runs of the same config and seed (keys `on`,
    see MATCH_KEYS), plot the computed `quantity` (a theory metric, e.g. 'm_prime',
    'fisher_ib_logdet', 'm_prime_without_head') against the measured robustness `measure` and
    return Spearman's ρ over the matched configs: does the theory predict the ordering?
    Pass training runs of one training setting (same lr, steps, ...)."""
    theory, training = list(theory), list(training)
    if measure not in MEASURES:
        raise UserError(f"unknown measure {measure!r}; allowed: {', '.join(MEASURES)}")
    points = pair_points(theory, training, quantity, measure, on)
    stats = spearman(points)
    out: dict[str, Any] = {"quantity": quantity, "measure": measure, "n_points": len(points), "points": points,
                           "spearman_rho": stats["rho"], "p_value": stats["p_value"], "p_exact": stats["p_exact"],
                           "informative": stats["informative"]}
    if path is not None and points:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
        draw_points(ax, points, stats, f"computed: {quantity}", f"measured: {measure}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130)
        plt.close(fig)
        out["figure"] = str(path)
    return out
