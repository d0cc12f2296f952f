"""The report's "Theory" section, from kind "theory" runs in the same database as the training runs.

- **Figure 3** rebuilt from stored `quantity: spectrum` runs (H′_α of the eigenvalues of AᵀA over
  rank × variance scale k, kaiming default k = 1/3 marked), one map per (init strategy, fan_in),
  with the Theorem 3.4 verdicts each run carries.
- **Theory vs measured robustness**: every theory run with quantity all/ntk/fisher is paired with
  the training runs of the same configuration and seed (`ttrlab.report.matching`); per attack,
  each computed quantity against the attack's measured robustness (`Attack.robustness_measure()`:
  ASR for backdoors, clean-accuracy drop vs the clean run of the same seed for untargeted
  poisoning), Spearman's ρ with scipy's p-value, the exact permutation p-value for n ≤ 8, and n
  (`ttrlab.report.stats.spearman`). Training runs that differ in
  training-only knobs (lr, steps, ...) and theory runs that differ in n / ε are never mixed: each
  combination is its own comparison (variant a, b, ...).
- **Theorem 3.6** checked on every FF/LoRA pair of theory runs with a Fisher spectrum on the same
  sample (same task, model, data, attack, rate, seed, n, ε).

Training aggregates and the paper's figures ignore theory runs (they are another kind).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ttrlab.attacks import ATTACKS
from ttrlab.core.errors import UserError
from ttrlab.evaluation import METRICS
from ttrlab.report.aggregate import fmt, method_label, method_owned_keys, task_type, trains
from ttrlab.report.drawing import finish
from ttrlab.report.output import ReportFolder
from ttrlab.report.matching import MEASURES, THEORY_KIND, is_full, match_key, match_keys, pair_points, point_label
from ttrlab.report.stats import correlation_text, spearman
from ttrlab.theory.figures import fig3_grid_from_results, plot_fig3, spectrum_groups
from ttrlab.report.drawing import pyplot
from ttrlab.sweep.store import StoredRun

# (metric, label): the figure's columns; TABLE_QUANTITIES are listed in the table as well.
FIGURE_QUANTITIES = (
    ("m_prime", "M′ = ‖E K(x, x̃)‖ (Eq. 7)"),
    ("m_prime_without_head", "M′ without the head"),
    ("grad_inner_abs", "|∇L(x)ᵀ∇L(x̃)| (Eqs. 16–17)"),
    ("fisher_trace", "Fisher trace (Eq. 8) = 2·IB_paper"),
    ("fisher_ib_logdet", "IB = ½ Σ log λ (Eq. 9)"),
)
TABLE_QUANTITIES = FIGURE_QUANTITIES + (
    ("ntk_trace", "NTK trace (Eq. 6)"),
    ("grad_cosine", "cos(∇L(x), ∇L(x̃))"),
    ("fisher_trace_without_head", "Fisher trace without the head"),
    ("fisher_ib_logdet_without_head", "IB (log-det) without the head"),
    ("fisher_renyi_1_normalized", "H₁ of p = λ/Σλ (Eq. 10)"),
)
# The paper's reading (Section 3.3): more kernel alignment / information ⇒ more backdoor
# learning (FF > LoRA in both); the over-simplified information geometry (low IB, H_α) makes
# LoRA more vulnerable to untargeted poisoning ⇒ a larger accuracy drop with less information.
# Eq. 7 cannot see a label flip (Section 2.4), so for UPA the paper predicts nothing via M′.
PREDICTED_SIGN = {
    "asr": {q: "ρ > 0" for q, _ in TABLE_QUANTITIES},
    "clean_accuracy_drop": {"fisher_trace": "ρ < 0", "fisher_ib_logdet": "ρ < 0", "fisher_trace_without_head": "ρ < 0",
                            "fisher_ib_logdet_without_head": "ρ < 0", "fisher_renyi_1_normalized": "ρ < 0"},
}
def matching_rule() -> str:
    """The matching of theory and training runs, in words, with the keys it matches on."""
    return (
        f"A theory run and a training run are the same configuration when they agree on {', '.join(match_keys())} "
        "(a method's own settings count only for that method: the full method has none) — and they are paired "
        "seed by seed (the theory at seed s is computed at exactly the initialisation θ₀ and on the data subset of "
        "the training run with seed s). A point is one configuration: the computed quantity and the measured "
        "robustness, each averaged over the seeds both sides hold. Measured robustness: the attack family's "
        "(ASR for backdoor attacks; for untargeted poisoning the clean accuracy of the clean run — no attack or "
        "rate 0 — of the same configuration and seed minus the clean accuracy under the attack). Training runs that "
        "differ in training-only knobs (learning rate, steps, batch size, eval size, ...) and theory runs that "
        "differ in n or ε are separate comparisons. ρ is Spearman's rank correlation over the points, p its "
        "two-sided p-value from scipy.stats.spearmanr (t approximation, optimistic at small n), 'exact' the "
        "two-sided permutation p-value over all n! pairings (n ≤ 8). With n < 4 points a rank correlation is not "
        "informative (at n = 3 the exact p cannot go below 1/3)."
    )
FIG3_ALPHA = 1.0


def theory_section(runs: list[StoredRun], folder: ReportFolder) -> dict[str, Any] | None:
    """Everything the template's Theory section shows (None when the database holds no theory
    runs); writes figures/fig3*.png|svg, figures/theory_vs_measured*.png|svg and theory.json."""
    theory = [r for r in runs if r["kind"] == THEORY_KIND]
    if not theory:
        return None
    # the training runs theory stands beside: kinds that train the same task type as theory's
    training = [r for r in runs if trains(r["kind"]) and task_type(r["kind"]) == task_type(THEORY_KIND)]
    figures_dir = folder.figures
    figures_dir.mkdir(parents=True, exist_ok=True)
    by_quantity = defaultdict(int)
    for r in theory:
        by_quantity[str(r["config"].get("quantity"))] += 1
    spectrum = [r for r in theory if r["config"].get("quantity") == "spectrum"]
    model_runs = [r for r in theory if r["config"].get("quantity") in ("all", "ntk", "fisher")]

    section: dict[str, Any] = {
        "counts": ", ".join(f"{n} × quantity {q}" for q, n in sorted(by_quantity.items())),
        "n_runs": len(theory),
        "fig3": [], "fig3_notes": [], "thm34": [], "thm34_summary": "",
        "comparisons": [], "comparison_notes": [], "matching_rule": matching_rule(),
        "thm36": [], "thm36_summary": "",
    }
    numbers: dict[str, Any] = {"fig3": {}, "theory_vs_measured": {}, "theorem_3_6": []}

    groups = spectrum_groups(spectrum)
    if not spectrum:
        section["fig3_notes"].append("Fig. 3 skipped: the database holds no theory runs with quantity 'spectrum' "
                                     "(e.g. specs/cpu/theory_fig3.yaml).")
    for i, ((init, fan_in), group) in enumerate(groups.items()):
        suffix = chr(ord("a") + i) if len(groups) > 1 else ""
        grid = fig3_grid_from_results(group, alpha=FIG3_ALPHA)
        if len(grid["ranks"]) < 2 or len(grid["scales"]) < 2:
            section["fig3_notes"].append(
                f"Fig. 3{suffix} ({init}, n = {fan_in}) skipped: the map needs two or more ranks and two or more scales; "
                f"the database holds ranks {grid['ranks']} × scales {[round(k, 4) for k in grid['scales']]}.")
            continue
        png, svg = figures_dir / f"fig3{suffix}.png", figures_dir / f"fig3{suffix}.svg"
        plot_fig3(grid, png, svg)
        numbers["fig3"][f"fig3{suffix}"] = grid
        missing = int(np.isnan(np.array(grid["normalized"], dtype=float)).sum())
        section["fig3"].append({
            "anchor": f"fig3{suffix}", "title": f"Fig. 3{suffix}.",
            "caption": (f"H′₁ of the eigenvalues of AᵀA (Eq. 18), A ∈ R^(r×{fan_in}) drawn by {init}, over rank r "
                        f"({len(grid['ranks'])} values, y) × variance scale k with Var(A) = k/n ({len(grid['scales'])} "
                        f"values, x, log); red dashed line: kaiming default k = 1/3. Left: normalized spectrum "
                        f"p = λ/Σλ (the textbook entropy); right: raw λ as Eq. 18 is printed. Up to "
                        f"{grid['seeds_per_cell']} seed(s) per cell"
                        + (f"; {missing} cells missing (white)." if missing else ".")),
            "alt": f"Figure 3{suffix}: H-prime map over rank and variance scale, {init}, n={fan_in}",
            **folder.embedded({"png": png, "svg": svg}),
        })
    section["thm34"], section["thm34_summary"] = _theorem_3_4_rows(spectrum)

    comparisons, notes = _theory_vs_measured(model_runs, training, folder, numbers)
    section["comparisons"], section["comparison_notes"] = comparisons, notes
    section["thm36"], section["thm36_summary"] = _theorem_3_6_rows(model_runs, numbers)
    folder.write("theory.json", json.dumps(_finite(numbers), indent=1, default=str, allow_nan=False) + "\n")
    return section


# ---- theory vs measured --------------------------------------------------------------------------
def _training_context(run: dict[str, Any]) -> str:
    """What a training run was besides its matched configuration and seed: steps, batch size,
    eval size, learning-rate preset (the resolved rate differs between FF and LoRA ranks by
    design, so the preset, not the rate, says which rule a run followed; an explicit lr counts)."""
    drop = {*match_keys(), *method_owned_keys(), "seed", "data_dir"}
    return json.dumps({k: v for k, v in run["config"].items() if k not in drop}, sort_keys=True, default=str)


def _theory_context(run: dict[str, Any]) -> str:
    c = run["config"]
    return json.dumps({"n": c.get("n"), "relative_eps": c.get("relative_eps")}, sort_keys=True)


def _attack_order(attack: str) -> tuple[int, str]:
    """Backdoor attacks first (the paper's Figure 3 discussion leads with them), then the rest."""
    return (0 if attack in ATTACKS and ATTACKS.get(attack).is_backdoor() else 1, attack)


def _measure(attack: str) -> str | None:
    return ATTACKS.get(attack).robustness_measure() if attack in ATTACKS else None


def _theory_vs_measured(theory: list[dict], training: list[dict], folder: ReportFolder,
                        numbers: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    notes: list[str] = []
    if not theory:
        notes.append("Theory vs measured skipped: the database holds no theory runs with quantity all, ntk or fisher.")
        return [], notes
    if not training:
        notes.append("Theory vs measured skipped: the database holds no training runs to compare with.")
        return [], notes
    theory_groups: dict[str, list[dict]] = defaultdict(list)
    for r in theory:
        theory_groups[_theory_context(r)].append(r)
    training_groups: dict[str, list[dict]] = defaultdict(list)
    for r in training:
        training_groups[_training_context(r)].append(r)

    found = []
    for t_ctx, t_runs in sorted(theory_groups.items()):
        attacks = sorted({str(r["config"].get("attack")) for r in t_runs if _measure(str(r["config"].get("attack")))},
                         key=_attack_order)
        for r_ctx, r_runs in sorted(training_groups.items()):
            rows = []
            for attack in attacks:
                measure = _measure(attack)
                of_attack = [r for r in t_runs if r["config"].get("attack") == attack]
                panels = []
                for quantity, label in TABLE_QUANTITIES:
                    points = pair_points(of_attack, r_runs, quantity, measure)
                    if points:
                        panels.append({"quantity": quantity, "label": label, "points": points, "stats": spearman(points)})
                if panels:
                    rows.append({"attack": attack, "measure": measure, "panels": panels})
            if rows:
                found.append((t_ctx, r_ctx, rows))
    if not found:
        configs = sorted({_short_config(r["config"]) for r in theory})
        notes.append("Theory vs measured skipped: no training run shares a configuration and seed with a theory run "
                     f"(theory configurations: {'; '.join(configs[:6])}{' …' if len(configs) > 6 else ''}). "
                     "See the matching rule above.")
        return [], notes

    matched = {tuple(pt["key"].values()) for _, _, rows in found for row in rows for panel in row["panels"]
               for pt in panel["points"]}
    unmatched = {match_key(r["config"]): point_label(r["config"]) for r in theory
                 if _measure(str(r["config"].get("attack"))) and match_key(r["config"]) not in matched}
    if unmatched:
        labels = sorted(unmatched.values())
        notes.append(f"{len(unmatched)} theory configuration(s) have no training run of the same configuration and seed "
                     f"in this database and are not plotted: {', '.join(labels[:12])}{' …' if len(labels) > 12 else ''}.")

    comparisons = []
    for i, (t_ctx, r_ctx, rows) in enumerate(found):
        suffix = chr(ord("a") + i) if len(found) > 1 else ""
        stem = f"theory_vs_measured_{suffix}" if suffix else "theory_vs_measured"
        embedded = folder.figure(_draw_comparison(rows), stem)
        table, points_table = [], []
        for row in rows:
            for panel in row["panels"]:
                s = panel["stats"]
                table.append({
                    "attack": row["attack"], "measure": row["measure"], "quantity": panel["quantity"], "label": panel["label"],
                    "n": s["n"], "rho": fmt(s["rho"], 3), "p": fmt(s["p_value"], 3), "p_exact": fmt(s["p_exact"], 3),
                    "significant": _significant(s),
                    "verdict": _verdict(s), "predicted": PREDICTED_SIGN.get(row["measure"], {}).get(panel["quantity"], "–"),
                })
                for p in panel["points"]:
                    points_table.append({"attack": row["attack"], "quantity": panel["quantity"], "config": p["label"],
                                         "seeds": " ".join(map(str, p["seeds"])), "computed": fmt(p["computed"]),
                                         "measured": fmt(p["measured"])})
        numbers["theory_vs_measured"][stem] = {
            "theory_context": json.loads(t_ctx), "training_context": json.loads(r_ctx),
            "rows": [{"attack": r["attack"], "measure": r["measure"],
                      "panels": [{"quantity": p["quantity"], "stats": p["stats"], "points": p["points"]} for p in r["panels"]]}
                     for r in rows],
        }
        t, r = json.loads(t_ctx), json.loads(r_ctx)
        comparisons.append({
            "anchor": stem, "title": f"Theory vs measured{(' ' + suffix) if suffix else ''}.",
            "context": f"theory: n={t.get('n')}, ε={t.get('relative_eps')}; training: "
                       + ", ".join(f"{k}={v}" for k, v in r.items() if k in ("lr_preset", "lr", "max_steps", "batch_size", "eval_size")),
            "alt": "Theory vs measured robustness: computed quantities against ASR and accuracy drop",
            **embedded,
            "table": table, "points": points_table,
        })
    return comparisons, notes


def _significant(stats: dict[str, Any]) -> bool:
    if stats["rho"] is None or not stats["informative"]:
        return False
    return (stats["p_exact"] if stats["p_exact"] is not None else stats["p_value"]) < 0.05


def _verdict(stats: dict[str, Any]) -> str:
    if stats["rho"] is None:
        return "no ρ (n < 3 or a constant side)"
    if not stats["informative"]:
        return "not informative (n < 4)"
    p = stats["p_exact"] if stats["p_exact"] is not None else stats["p_value"]
    return f"{'significant' if p < 0.05 else 'not significant'} at 5%"


def _draw_comparison(rows: list[dict[str, Any]]):
    plt = pyplot()

    shown = [q for q, _ in FIGURE_QUANTITIES]
    labels = dict(FIGURE_QUANTITIES)
    fig, axes = plt.subplots(len(rows), len(shown), figsize=(3.3 * len(shown), 3.0 * len(rows) + 0.8), squeeze=False)
    for i, row in enumerate(rows):
        panels = {p["quantity"]: p for p in row["panels"]}
        for j, quantity in enumerate(shown):
            ax = axes[i][j]
            panel = panels.get(quantity)
            if panel is None:
                ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes, color="#888")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(labels[quantity], fontsize=8)
            else:
                draw_points(ax, panel["points"], panel["stats"], labels[quantity],
                            f"{ATTACKS.get(row['attack']).label}: {METRICS.info(row['measure']).label} (measured)" if j == 0 else "")
    finish(fig, "Computed at θ₀ (x) vs measured after training (y): full fine-tuning orange, adapters blue, labels "
                "give the poisoning rate; Spearman ρ over the points above each panel", title_size=10)
    return fig


def _short_config(c: dict[str, Any]) -> str:
    return (f"{c.get('task')} {method_label(c)} {c.get('attack')} ρ={c.get('rate')} train_size={c.get('train_size')} "
            f"seed={c.get('seed')}")


# ---- theorem verdicts ----------------------------------------------------------------------------
def _theorem_3_4_rows(spectrum: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """One row per (init, n, r, k): the theorem's stated eigenvalue σ²n against the measured
    nonzero eigenvalues of AᵀA and the Marchenko–Pastur edges; whether M_Δ = AᵀA − I ⪯ 0, also
    with peft's scaling s = α/r."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in spectrum:
        check = (r.get("result") or {}).get("theorem_3_4")
        if check:
            cells[(check["strategy"], check["fan_in"], check["rank"], round(check["scale_k"], 9))].append(check)
    rows = []
    conditions = nsd_given_conditions = stated_ok = 0
    for (strategy, fan_in, rank, k), checks in sorted(cells.items()):
        seeds = len(checks)
        cond = all(c["theorem_conditions_hold"] for c in checks)
        nsd = sum(c["m_delta"]["negative_semidefinite"] for c in checks)
        within = all(c["statement_vs_measured"]["max_over_statement"] <= 1.1 and c["statement_vs_measured"]["min_over_statement"] >= 0.9
                     for c in checks)
        conditions += cond
        nsd_given_conditions += cond and nsd == seeds
        stated_ok += within
        mean = lambda f: float(np.mean([f(c) for c in checks]))  # noqa: E731
        rows.append({
            "init": strategy, "n": fan_in, "r": rank, "k": fmt(k, 4), "seeds": seeds,
            "stated": fmt(mean(lambda c: c["statement_nonzero_eigenvalue"])),
            "measured": f"{fmt(mean(lambda c: c['nonzero_eigenvalues']['min']))} – {fmt(mean(lambda c: c['nonzero_eigenvalues']['max']))}",
            "mp": f"{fmt(mean(lambda c: c['marchenko_pastur']['low']))} – {fmt(mean(lambda c: c['marchenko_pastur']['high']))}",
            "mp_inside": fmt(mean(lambda c: c["marchenko_pastur"]["share_inside_5pct"]), 3),
            "conditions": "yes" if cond else "no",
            "nsd": f"{nsd}/{seeds}",
            "nsd_scaled": f"{sum(c['with_lora_scaling']['negative_semidefinite'] for c in checks)}/{seeds}",
            "stated_within": "yes" if within else "no",
        })
    if not rows:
        return [], ""
    summary = (f"{len(rows)} (r, k) cells. Theorem 3.4's conditions (σ² < 1/n, r ≤ n) hold in {conditions}; in "
               f"{nsd_given_conditions} of those M_Δ = AᵀA − I was measured negative semi-definite in every seed. "
               f"The stated 'r eigenvalues equal to σ²·n' is within ±10% (all nonzero eigenvalues in [0.9, 1.1]·σ²n) "
               f"in {stated_ok} of {len(rows)} cells: at finite r/n they spread over the Marchenko–Pastur support.")
    return rows, summary


THM36_KEYS = ("task", "model", "data_source", "attack", "rate", "trigger", "trigger_position", "target_label",
              "attack_options", "train_size", "max_length", "seed", "n", "relative_eps")


def _theorem_3_6_rows(theory: list[dict[str, Any]], numbers: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Theorem 3.6 (IB_FF ≥ IB_LoRA, H_α,FF ≥ H_α,LoRA) on every FF/LoRA pair of stored Fisher
    spectra of the same sample."""
    from ttrlab.theory.measures import theorem_3_6_check

    with_fisher = [r for r in theory if (r.get("result") or {}).get("fisher")]
    ff: dict[str, dict] = {}
    lora: dict[str, list[dict]] = defaultdict(list)
    for r in with_fisher:
        key = json.dumps([r["config"].get(k) for k in THM36_KEYS], default=str)
        if is_full(r["config"]):
            ff.setdefault(key, r)
        else:
            lora[key].append(r)
    rows = []
    for key, lora_runs in lora.items():
        if key not in ff:
            continue
        for run in sorted(lora_runs, key=lambda r: (r["config"].get("rank"), r["config"].get("init_scale") or 1 / 3)):
            verdict = theorem_3_6_check(ff[key]["result"], run["result"])
            c = run["config"]
            failed = [name for name, comp in verdict["comparisons"].items() if not comp["holds"]]
            cond = verdict["conditions"]
            rows.append({
                "method": method_label(c),
                "attack": c.get("attack"), "rate": fmt(c.get("rate")), "seed": c.get("seed"), "n": c.get("n"),
                "conditions": f"r ≤ n: {'yes' if cond['r_le_n'] else 'no'}, σ² ≤ 1/n: {'yes' if cond['variance_le_1_over_n'] else 'no'}",
                "held": f"{len(verdict['comparisons']) - len(failed)}/{len(verdict['comparisons'])}",
                "holds_all": verdict["holds_all"],
                "failed": ", ".join(failed) or "–",
                "eigenvalue_share": fmt(verdict["eigenvalue_wise_share"], 3),
            })
            numbers["theorem_3_6"].append({"config": c, "ff_run_key": ff[key]["run_key"], "verdict": verdict})
    if not rows:
        return [], ""
    held = sum(r["holds_all"] for r in rows)
    failures: dict[str, int] = defaultdict(int)
    for entry in numbers["theorem_3_6"]:
        for name, comparison in entry["verdict"]["comparisons"].items():
            failures[name] += not comparison["holds"]
    failed = ", ".join(f"{name} in {n}" for name, n in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])) if n)
    eigenvalue_wise = sum(entry["verdict"]["eigenvalue_wise_holds"] for entry in numbers["theorem_3_6"])
    summary = (f"{len(rows)} FF/LoRA pairs on the same Fisher sample: every comparison (IB both forms, H_α both variants "
               f"and four α, trace, λ_max) held in {held}" + (f"; did not hold: {failed}" if failed else "")
               + f". The eigenvalue-wise claim of Eq. 41 (every sorted LoRA eigenvalue ≤ FF's) held in {eigenvalue_wise}.")
    return rows, summary


def _finite(value: Any) -> Any:
    """NaN / ±inf as null, so theory.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# ---- one comparison, for callers outside the report ---------------------------------------------
def draw_points(ax, points: Sequence[dict], stats: dict[str, Any], xlabel: str, ylabel: str) -> None:
    """One scatter panel: the full method orange, the others blue, each point labelled (to the
    left of points in the right half, so labels stay inside), ρ / p / n as the panel's title."""
    xs = [p["computed"] for p in points]
    middle = (min(xs) + max(xs)) / 2
    for point in points:
        right = len(points) > 1 and point["computed"] > middle
        ax.scatter(point["computed"], point["measured"], color="C1" if point["full"] else "C0", s=28, zorder=3)
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
    on: Sequence[str] | None = None,
    path: str | Path | None = None,
) -> dict[str, Any]:
    """Pair each theory config with the training runs of the same config and seed (keys `on`,
    see `ttrlab.report.matching`), plot the computed `quantity` (a theory metric, e.g. 'm_prime',
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
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
        draw_points(ax, points, stats, f"computed: {quantity}", f"measured: {measure}")
        from ttrlab.core.io import save_figure as save_atomic

        save_atomic(fig, path, dpi=130)
        plt.close(fig)
        out["figure"] = str(path)
    return out
