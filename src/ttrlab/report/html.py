"""`build_report(db, out_dir)`: figures (PNG + SVG), tables (CSV + Markdown) and one
self-contained HTML file (figures embedded as base64 SVG, no script, no network: a
Content-Security-Policy forbids every fetch). The HTML is rendered by Jinja2 with autoescape on,
so every name that comes from user input (task names, spec text, errors, ...) is escaped.

What it holds: the headline comparisons (every attack, each method vs the full method), the
declared claims (the paper's, or `claims=` a user's file) with a verdict each (`ttrlab.report.claims`:
paper_comparison.md/.csv, the claims file's version and sha256 beside them), the
paper's figures per attack (`ttrlab.report.figures`), Tables 2, E.1 and 3 with the paper's
numbers beside (`ttrlab.report.tables`), Table 3's paired FF-vs-LoRA tests
(`ttrlab.report.paired`), the learning curves (`ttrlab.report.learning_curves`), every
comparison and aggregate, every method against full fine-tuning (`ttrlab.report.methods`),
defense efficacy per victim method (`ttrlab.report.defenses`), and — when the database holds runs of kind "theory" — the Theory
section (`ttrlab.report.theory`). The statistics and their rules for few seeds are
`ttrlab.report.stats`.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import platform
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ttrlab.attacks import ATTACKS
from ttrlab.core.errors import note
from ttrlab.evaluation import METRICS
from ttrlab.core.io import check_output_folder, own_folder, write_text_atomic
from ttrlab.report import claims as declared_claims
from ttrlab.report import learning_curves, stats
from ttrlab.report.aggregate import (
    AGGREGATE_COLUMNS,
    AGGREGATE_DISPLAY,
    COMPARISON_COLUMNS,
    aggregate_rows,
    build_cells,
    comparison_rows,
    is_stale,
    fmt,
    method_vs_full,
    to_csv,
    to_markdown,
)
from ttrlab.report.figures import FIGURES, attacks_drawn, figure_data, figure_records, render
from ttrlab.report.defenses import defense_tables, defense_tables_markdown
from ttrlab.report.methods import method_tables, method_tables_markdown, render_trainable_figure, spearman_note
from ttrlab.report.paired import SEED_METRICS, display, paired_rows
from ttrlab.report.tables import (
    TABLE_3_METRICS,
    TABLE_3_TASK_TYPE,
    TABLE_E1_METRICS,
    attacks_without_comparison,
    headline_rows,
    metric_labels,
    paper_numbers,
    paper_table2_row,
    pm,
    table2_rows,
    table3_rows,
    table_e1_rows,
)
from ttrlab.report.theory import theory_section
from ttrlab.sweep.store import FAILED, FINISHED, ResultStore, redacted

X_LABELS = {"rate": "rate ρ", "rank": "rank r", "init_scale": "k"}


def build_report(db: str | os.PathLike, out_dir: str | os.PathLike, claims: str | os.PathLike | None = None) -> Path:
    """Write the report into `out_dir`; return the path of index.html. `claims`: a claims file
    to decide (default: the paper's, `report/claims/paper_claims.yaml`)."""
    declared = declared_claims.load_claims(claims)
    out = check_output_folder(out_dir, "report folder")
    with ResultStore(db, create=False) as store:
        runs = store.runs(status=FINISHED)
        failed = store.runs(status=FAILED)
        sweeps = store.sweeps()
        url = store.url
        for message in store.notes:
            note(message)
        for row in store.skipped:
            note(f"left out of the report: stored run {row['id']} ({row['kind']} {row['run_key']}): {row['problem']}")
        skipped = list(store.skipped)
    own_folder(out, "report folder")
    figures_dir = out / "figures"

    cells = build_cells(runs)
    stale = sum(is_stale(r) for r in runs)
    comparisons = method_vs_full(cells)
    aggregates = aggregate_rows(cells)
    compared = comparison_rows(comparisons)
    write_text_atomic(out / "aggregates.csv", to_csv(aggregates, AGGREGATE_COLUMNS))
    write_text_atomic(out / "aggregates.md", to_markdown(aggregates, AGGREGATE_DISPLAY))
    write_text_atomic(out / "comparisons.csv", to_csv(compared, COMPARISON_COLUMNS))
    write_text_atomic(out / "comparisons.md", to_markdown(compared, COMPARISON_COLUMNS))
    verdicts = declared_claims.check(cells, declared)
    write_text_atomic(out / "paper_comparison.md", f"{verdicts.header()}\n\n**{verdicts.headline()}**\n\n{verdicts.markdown()}")
    write_text_atomic(out / "paper_comparison.csv", verdicts.csv())

    figures, notes, figure_tables = _figures(figure_records(runs), out, figures_dir)
    curves, curve_notes, curve_reach = _curves(cells, out, figures_dir, figure_tables)
    methods = method_tables(cells, comparisons)
    write_text_atomic(out / "methods.md", method_tables_markdown(methods))
    defenses = defense_tables(cells)
    write_text_atomic(out / "defenses.md", defense_tables_markdown(defenses))
    trainable_paths, trainable_table = render_trainable_figure(cells, figures_dir)
    if trainable_paths:
        figure_tables[trainable_paths["svg"].stem] = trainable_table
    write_text_atomic(out / "figures.json", json.dumps(figure_tables, indent=1, default=_json_default) + "\n")

    table2 = [{
        **{k: row[k] for k in ("task", "init", "attack", "rank", "n")},
        "k": fmt(row["k"]), "rate": fmt(row["rate"]), "test_set": row["test set"],
        **{m: pm(row[m]) for m in ("accuracy", "precision", "recall", "f1")},
        "paper": _paper_table2(row),
    } for row in table2_rows(cells)]
    paper = paper_numbers()

    theory = theory_section(runs, out)
    table3 = table3_rows(cells)

    html = _template().render(
        title=_title(sweeps),
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        db=redacted(url),
        counts={"finished": len(runs), "failed": len(failed), "theory": sum(r["kind"] == "theory" for r in runs),
                "stale": stale},
        n_cells=len(cells),
        n_figures=len(figures),
        total_hours=f"{sum(r['seconds'] or 0 for r in runs) / 3600:.2f}",
        rules=_rules(),
        headline=headline_rows(comparisons),
        paper_claims=[{**row, "decided": decision.decided}
                      for row, decision in zip(verdicts.rows(), verdicts.decisions)],
        paper_claims_header=verdicts.header(),
        paper_claims_summary=verdicts.headline(),
        claim_checks=list(declared.checks.values()),
        headline_missing=attacks_without_comparison(cells, comparisons),
        methods=methods,
        defenses=defenses,
        trainable_figure=({**_embedded(trainable_paths, out), "notes": spearman_note(trainable_table),
                           "table": [{**r, "trainable": fmt(r["trainable"]), "mean": fmt(r["mean"]), "std": fmt(r["std"])}
                                     for r in trainable_table]} if trainable_paths else None),
        figures=figures,
        figure_notes=notes,
        theory=theory,
        table2=table2,
        table_e1=table_e1_rows(cells),
        table_e1_metrics=metric_labels(TABLE_E1_METRICS),
        table3=table3,
        table3_metrics=metric_labels(TABLE_3_METRICS),
        table3_tasks=_task_summaries(table3),
        table3_paired=[display(r) for r in paired_rows(cells, comparisons, TABLE_3_TASK_TYPE)],
        paired_metrics=[{"metric": m, "label": METRICS.info(m).label, "summary": METRICS.info(m).summary}
                        for m in SEED_METRICS],
        curves=curves,
        curve_notes=curve_notes,
        curve_reach=curve_reach,
        reach={"metric": METRICS.info(learning_curves.REACH_METRIC).label,
               "threshold": f"{100 * learning_curves.REACH_THRESHOLD:g}%"},
        paper=paper,
        comparison_columns=COMPARISON_COLUMNS,
        comparisons=[[fmt(r[c]) for c in COMPARISON_COLUMNS] for r in compared],
        aggregate_columns=AGGREGATE_DISPLAY,
        aggregates=[[fmt(r[c]) for c in AGGREGATE_DISPLAY] for r in aggregates],
        failures=[_failure(r) for r in failed],
        skipped=skipped,
        sweeps=[{"name": s.name, "planned": s.planned_runs, "path": s.spec_path or "(inline spec)",
                 "sha": s.spec_sha256, "text": s.spec_text} for s in sweeps],
        cells=[{"id": c.id, "kind": c.kind, "seeds": " ".join(map(str, c.seeds)),
                "config": json.dumps(c.config, sort_keys=True, default=str)} for c in cells],
        versions=_versions(runs),
        ttrlab_version=_ttrlab_version(),
        host=platform.node(),
    )
    return write_text_atomic(out / "index.html", html)


def _paper_table2(row: dict[str, Any]) -> str:
    """The paper's Acc. / F1 for this Table 2 row's strategy, k and clean-or-backdoored, or ''."""
    paper = paper_table2_row(row["init"], row["k"], row["rate"] > 0)
    if paper is None:
        return ""
    return f"{paper['mean'][0]:.2f} / {paper['mean'][3]:.2f} ({paper['label']}, k = {paper['k']:g}, {100 * paper['rate']:g}%)"


def _figures(records: list[dict[str, Any]], out: Path, figures_dir: Path):
    """Every figure of FIGURES, once per attack drawn (`attacks_drawn`); notes for those skipped."""
    figures, notes, tables = [], [], {}
    for spec in FIGURES:
        drawn_paper, not_drawn = False, []
        for variant, attacks in attacks_drawn(spec, records):
            data = figure_data(spec, records, attacks, variant)
            if not data:
                not_drawn.append(variant)
            drawn_paper |= bool(data) and not variant
            for figure in data:
                paths = render(figure, figures_dir)
                table = figure.table()
                tables[figure.stem] = table
                drawn = ", ".join(ATTACKS.get(a).label for a in figure.attacks.values())
                figures.append({
                    "anchor": figure.stem,
                    "title": f"{figure.name}.",
                    "caption": f"{spec.title} ({drawn}). Mean ± std (ddof=1) over seeds; columns are tasks.",
                    "alt": f"{figure.name}: {spec.title} ({drawn})",
                    "context": _context_text(figure.context),
                    **_embedded(paths, out),
                    "x_label": X_LABELS[spec.x],
                    "table": [{**r, "x": fmt(r["x"]), "mean": fmt(r["mean"]), "std": fmt(r["std"])} for r in table],
                })
        variants = [v for v in not_drawn if v]
        if not drawn_paper:
            notes.append(f"Fig. {spec.number} skipped: the database holds no {_needs(spec)}"
                         + (f" (nor for {', '.join(variants)})." if variants else "."))
        elif variants:
            notes.append(f"Fig. {spec.number} not drawn for {', '.join(variants)}: the database holds no {_needs(spec)}.")
    return figures, notes, tables


def _curves(cells, out: Path, figures_dir: Path, tables: dict[str, Any]):
    """Every learning-curve figure (`learning_curves`), drawn and embedded as the paper's figures
    are; their numbers join `tables` (figures.json); notes on curves not drawn; the rows of
    "steps until ASR ≥ 50%"."""
    figures, notes = learning_curves.curve_figures(cells)
    drawn = []
    for figure in figures:
        paths = learning_curves.render(figure, figures_dir)
        table = figure.table()
        tables[figure.stem] = table
        metrics = " and ".join(METRICS.info(m).label for m in figure.metrics)
        drawn.append({
            "anchor": figure.stem,
            "title": f"{figure.name}.",
            "caption": f"{metrics} at each checkpoint, one colour per method setting "
                       f"({learning_curves.style_text(figure)}); mean ± std (ddof=1) over the seeds that hold the "
                       f"point; panels are task × attack.",
            "alt": f"{figure.name}: {metrics} over training steps",
            "context": learning_curves.context_text(figure),
            **_embedded(paths, out),
            "table": [{**r, "panel": learning_curves.panel_title(r["task"], r["attack"]), "mean": fmt(r["mean"]),
                       "std": fmt(r["std"])} for r in table],
        })
    reach = [{**r, "steps": fmt(r["steps"]), "poisoned_seen": fmt(r["poisoned_seen"]),
              "examples_seen": fmt(r["examples_seen"]), "panel": learning_curves.panel_title(r["task"], r["attack"])}
             for r in learning_curves.reach_rows(figures)]
    return drawn, notes, reach


def _embedded(paths: dict[str, Path], out: Path) -> dict[str, str]:
    """A drawn figure's files (relative to the report) and its SVG, base64, for the page."""
    return {"files": ", ".join(str(p.relative_to(out)) for p in paths.values()),
            "svg_b64": base64.b64encode(paths["svg"].read_bytes()).decode("ascii")}


def _task_summaries(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(task, what its trigger does) for the generative tasks Table 3 holds, in its order."""
    from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

    names = list(dict.fromkeys(str(r["task"]) for r in rows))
    return [(name, GENERATIVE_TASKS.get(name).summary) for name in names if name in GENERATIVE_TASKS]


def _rules() -> dict[str, Any]:
    """The numbers the template's statistics paragraph quotes."""
    return {"min_n": stats.MIN_N, "alpha": stats.ALPHA, "power": stats.POWER,
            "min_discordant": stats.MIN_DISCORDANT,
            "exact_pairs": int(math.log2(stats.EXACT_ASSIGNMENTS)),
            "floors": ", ".join(f"{fmt(stats.sign_flip_floor(n), 4)} ({n})" for n in range(2, 7))}


def _template():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent)), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined)
    return env.get_template("report.html")


def _needs(spec) -> str:
    return {
        "rate": "runs of a non-full method and the full method at two or more poisoning rates for this attack",
        "rank": "LoRA runs at two or more ranks for this attack",
        "init_scale": "LoRA (default init strategy) runs at two or more init variance scales for this attack",
    }[spec.x]


def _context_text(context: dict[str, Any]) -> str:
    shown = ("model", "train_size", "eval_size", "max_steps", "batch_size", "max_length", "rank", "alpha", "init")
    return ", ".join(f"{k}={context[k]}" for k in shown if k in context)


def _failure(run: dict[str, Any]) -> dict[str, str]:
    error = run.get("error") or ""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    c = run["config"]
    label = " ".join(str(c.get(k)) for k in ("task", "method", "attack", "rate", "seed") if k in c) or run["run_key"]
    return {"label": f"{run['kind']} {label}", "last": lines[-1] if lines else "error", "error": error}


def _versions(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    seen: dict[str, Counter] = defaultdict(Counter)
    for run in runs:
        for name, version in (run.get("versions") or {}).items():
            seen[name][str(version)] += 1
    return [(name, ", ".join(f"{v} ({n})" for v, n in counter.most_common())) for name, counter in sorted(seen.items())]


def _title(sweeps) -> str:
    names = [s.name for s in sweeps]
    if not names:
        return "empty database"
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _ttrlab_version() -> str:
    from ttrlab import __version__

    return __version__


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
