"""The report's shape: registered sections that appear where the database holds their data, the
typed records they read, a user's own sweep over a task file (its comparison and the figure of what
it varied, no paper boilerplate, the task said for what it is), the claims on request, no stale or
empty side file, and figure titles that fit their figure.

The databases hold synthetic result documents written through the real store for real configs
(as in test_report_build.py), here over a three-class task file (test_task_files.py's)."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from test_report_build import EVIL, make_db, section_ids, tables_of, upa_configs
from test_task_files import _make_task
from ttrlab.data.tasks import get_task
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.report import build_report
from ttrlab.report.claims import load_claims
from ttrlab.sweep.store import ResultStore, StoredRun

PAPER_SIDE_FILES = ("methods.md", "defenses.md", "paper_comparison.md", "paper_comparison.csv", "theory.json")


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    return _make_task(tmp_path_factory.mktemp("task"))


def csv_task_result(config, rng, loss=0.3):
    """A run of the three-class task: FF keeps its triggered accuracy better than LoRA; each run
    records its data provenance and its training loss, as real runs do."""
    shared = np.random.default_rng(config.seed).normal(0, 0.01)
    acc = 0.8 + shared + rng.normal(0, 0.005)
    asr = (0.1 + config.rate * (6 if config.method == "ff" else 3)) + shared
    metrics = {"clean": {"accuracy": acc, "macro_f1": acc - 0.02}, "asr": asr,
               "triggered": {"accuracy": acc - asr / 2}}
    return {"metrics": metrics, "data": get_task(config.task).provenance(), "train": {"final_loss": loss},
            "versions": {"ttrlab": "test"}}


def csv_configs(task_file, methods=("ff", "lora"), rates=(0.0, 0.1), seeds=(0, 1, 2), **extra):
    base = dict(task=str(task_file), lr_preset="cpu", train_size=60, eval_size=30, max_steps=20, max_length=32,
                attack="bpa", **extra)
    return [RunConfig(**base, method=m, rate=r, seed=s) for m in methods for r in rates for s in seeds]


# ---- a user's own sweep over a task file -------------------------------------------------------------
def test_a_twelve_run_csv_sweep_shows_its_comparison_and_figures_and_nothing_of_the_paper_it_lacks(task_file, tmp_path):
    db = make_db(tmp_path / "r.sqlite", csv_configs(task_file), sweep_name="topics-bpa", result=csv_task_result)
    index = build_report(db, tmp_path / "report")
    html, out = index.read_text(), index.parent
    # what it varied (method × rate) is drawn, as the paper's Fig. 2, 7 and 8 of its own task
    assert section_ids(html) == ["summary", "paper", "figures", "table-e1", "comparisons", "aggregates", "sweeps",
                                 "versions"]
    figures = json.loads((out / "figures.json").read_text())
    assert sorted(figures) == ["fig2", "fig7", "fig8"]
    assert {p["task"] for p in figures["fig2"]} == {"topics"} and {p["x"] for p in figures["fig2"]} == {0.0, 0.1}
    # its comparison: LoRA vs FF at each rate, on the attack's headline metrics
    rows = [r for r in tables_of(html).sections["summary"] if r and r[0] == "topics"]
    assert len(rows) == 4 and all("LoRA r=8, α=16 vs FF" in " ".join(r) for r in rows)
    # of the paper's claims it tests only Fig. 8's (BPA leaves clean accuracy alone: any task): those rows
    # are the table; the others are one closed list
    claims = tables_of(html).sections["paper"]
    tested = claims[1:claims.index(["figure", "claim", "what it needs / why"])]
    assert [r[0] for r in tested] == ["Fig. 8"] * 3
    assert f"{len(load_claims().claims) - 3} declared claims these runs cannot test" in html
    assert (out / "paper_comparison.md").is_file()
    for name in ("methods.md", "defenses.md", "theory.json"):  # no empty side file
        assert not (out / name).exists(), name
    assert "skipped" not in html
    # the task is said for what it is: a task file and its dev CSV, not a GLUE dev set
    tasks = html.split("<b>Tasks.</b>")[1].split("</p>")[0]
    assert "GLUE" not in tasks and "topics" in tasks and str(task_file.resolve()) in tasks
    assert "data/dev.csv (csv)" in tasks


def test_a_sweep_of_methods_at_one_rate_gets_the_figure_of_what_it_varied(task_file, tmp_path):
    configs = csv_configs(task_file, methods=("ff", "lora", "ia3"), rates=(0.1,))
    index = build_report(make_db(tmp_path / "r.sqlite", configs, sweep_name="methods", result=csv_task_result),
                         tmp_path / "report")
    html = index.read_text()
    assert "figures" not in section_ids(html) and "varied" in section_ids(html)  # no paper figure has two rates
    figure = json.loads((index.parent / "figures.json").read_text())["varied_1"]
    assert {p["series"] for p in figure} == {"FF", "LoRA r=8, α=16", "IA3"}
    assert {p["metric"] for p in figure} == {"accuracy (clean test)", "accuracy (triggered test)", "ASR"}
    ff_asr = next(p for p in figure if p["series"] == "FF" and p["metric"] == "ASR")
    assert ff_asr["n"] == 3 and ff_asr["x"] is None  # one position per series: no number varied
    caption = html.split('id="varied_1"')[1].split("</figcaption>")[0]
    assert "Sweep methods." in caption and "What it varied: method" in caption
    assert "setting: " in caption and "train_size=60" in caption


def test_a_sweep_over_a_number_draws_it_on_x(task_file, tmp_path):
    """Steps varied at one rate (no paper figure): x is the number that varied, a line per method."""
    configs = [c.replace(max_steps=steps) for steps in (10, 20, 40) for c in csv_configs(task_file, rates=(0.1,))]
    index = build_report(make_db(tmp_path / "r.sqlite", configs, sweep_name="steps", result=csv_task_result),
                         tmp_path / "report")
    figure = json.loads((index.parent / "figures.json").read_text())["varied_1"]
    assert {p["x"] for p in figure} == {10, 20, 40} and {p["series"] for p in figure} == {"FF", "LoRA r=8, α=16"}
    assert "x: max_steps" in index.read_text()


def test_a_method_that_did_not_learn_is_marked_in_the_figures_too(task_file, tmp_path):
    def lora_never_fits(config, rng):
        return csv_task_result(config, rng, loss=1.2 if config.method == "lora" else 0.3)  # ln 3 = 1.10

    index = build_report(make_db(tmp_path / "r.sqlite", csv_configs(task_file), result=lora_never_fits),
                         tmp_path / "report")
    html = index.read_text()
    caption = html.split('id="fig2"')[1].split("</figcaption>")[0]
    assert "did not learn the task: topics: LoRA r=8, α=16" in caption
    headline = [r for r in tables_of(html).sections["summary"] if r and r[0] == "topics"]
    assert headline and all("did not learn" in r[-1] for r in headline)  # every comparison holds LoRA


def test_a_caption_names_where_along_x_a_line_did_not_learn():
    """A line whose method failed at some of its points only is named with those x values, per task;
    one that failed throughout, or a reference line (no x), is named whole."""
    from types import SimpleNamespace

    from ttrlab.report.sections.figures import not_learned_text

    cells = {cid: SimpleNamespace(task=task) for cid, task in
             [("r1", "sst2"), ("r8", "sst2"), ("r64", "sst2"), ("c1", "cola"), ("c8", "cola"), ("ff", "sst2")]}
    failing = {id(cells[cid]) for cid in ("r1", "c1", "c8", "ff")}
    rule = SimpleNamespace(failed=lambda cell: "did not learn" if id(cell) in failing else None)
    line = {"r1": 1.0, "r8": 8.0, "r64": 64.0, "c1": 1.0, "c8": 8.0}
    series = [("sst2", "LoRA", line), ("cola", "LoRA", line), ("sst2", "FF clean", {"ff": None}),
              ("sst2", "IA3", {"r8": 8.0})]
    assert not_learned_text(series, cells, rule, "rank") == "sst2: LoRA at rank 1, FF clean; cola: LoRA"


def test_an_attack_no_pair_covers_is_named_by_its_label(task_file, tmp_path):
    configs = csv_configs(task_file, methods=("ff",), rates=(0.1,), seeds=(0, 1))
    html = build_report(make_db(tmp_path / "r.sqlite", configs, result=csv_task_result), tmp_path / "report").read_text()
    assert "No method-vs-full pair at the same setting for the attack: BPA (bpa)." in html


def test_the_headline_heads_each_kind_and_model_once(tmp_path):
    """Two models over two tasks: the rows of one model together, under one row naming it."""
    base = dict(lr_preset="cpu", train_size=64, max_steps=3, attack="upa", rate=0.1)
    configs = [RunConfig(**base, model=model, task=task, method=method, seed=seed)
               for model in ("minilm", "roberta-base") for task in ("sst2", "cola") for method in ("ff", "lora")
               for seed in (0, 1, 2)]
    html = build_report(make_db(tmp_path / "r.sqlite", configs), tmp_path / "report").read_text()
    rows = tables_of(html).sections["summary"]
    shown = [r[0] for r in rows[next(i for i, r in enumerate(rows) if "task" in r) + 1:]]
    assert shown == ["train · minilm", "cola", "sst2", "train · roberta-base", "cola", "sst2"]


def test_hostile_sweep_names_stay_escaped_in_the_figure_of_what_it_varied(task_file, tmp_path):
    configs = csv_configs(task_file, rates=(0.1,), seeds=(0, 1))
    html = build_report(make_db(tmp_path / "r.sqlite", configs, sweep_name=f"mine {EVIL}", result=csv_task_result),
                        tmp_path / "report").read_text()
    assert 'id="varied_1"' in html and EVIL not in html and "Sweep mine &lt;img src=x onerror=alert(1)&gt;." in html
    assert list((tmp_path / "report" / "figures").glob("varied_1.*"))  # the file name holds no user text


# ---- the claims on request, side files -----------------------------------------------------------------
def test_the_claims_appear_where_testable_or_asked_for(task_file, tmp_path, capsys):
    from ttrlab.cli import main

    db = make_db(tmp_path / "r.sqlite", csv_configs(task_file, rates=(0.1,), seeds=(0, 1)), result=csv_task_result)
    assert "paper" not in section_ids(build_report(db, tmp_path / "plain").read_text())
    html = build_report(db, tmp_path / "asked", compare_paper=True).read_text()
    total = len(load_claims().claims)
    assert "paper" in section_ids(html) and f"None of the {total} declared claims can be tested on these runs" in html
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "cli"), "--compare-paper"]) == 0
    assert "not testable here" in capsys.readouterr().out and (tmp_path / "cli" / "paper_comparison.csv").is_file()
    # the paper's UPA runs (test_report_build's) test a claim: the section is there unasked
    upa = build_report(make_db(tmp_path / "upa.sqlite", upa_configs()), tmp_path / "upa").read_text()
    assert "paper" in section_ids(upa) and 'href="#paper"' in upa


def test_a_rebuilt_report_holds_only_what_this_database_gives(task_file, tmp_path):
    """A report folder rebuilt from another database keeps no table or figure of the earlier one."""
    out = tmp_path / "report"
    build_report(make_db(tmp_path / "upa.sqlite", upa_configs()), out)
    assert (out / "paper_comparison.md").is_file() and (out / "figures" / "fig1.svg").is_file()
    (out / "notes.txt").write_text("mine")  # a file the report does not write stays
    configs = csv_configs(task_file, rates=(0.1,), seeds=(0, 1))
    build_report(make_db(tmp_path / "csv.sqlite", configs, result=csv_task_result), out)
    assert not (out / "paper_comparison.md").exists() and not (out / "figures" / "fig1.svg").exists()
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["varied_1.png", "varied_1.svg"]
    assert (out / "notes.txt").read_text() == "mine"


def test_the_page_names_the_database_as_given(tmp_path, monkeypatch):
    """A relative path stays relative (a published report names no folder of the machine that
    built it); the store resolves it only to open it."""
    make_db(tmp_path / "r.sqlite", upa_configs()[:6])
    monkeypatch.chdir(tmp_path)
    html = build_report("r.sqlite", "report").read_text()
    assert "· database r.sqlite</p>" in html and str(tmp_path) not in html
    html = build_report(tmp_path / "r.sqlite", "again").read_text()  # an absolute path, as given
    assert f"· database {tmp_path / 'r.sqlite'}</p>" in html


def test_comparisons_csv_names_the_arm_that_did_not_learn(task_file, tmp_path):
    def ff_never_fits(config, rng):
        return csv_task_result(config, rng, loss=1.5 if config.method == "ff" else 0.3)

    index = build_report(make_db(tmp_path / "r.sqlite", csv_configs(task_file, seeds=(0, 1)), result=ff_never_fits),
                         tmp_path / "report")
    with open(index.parent / "comparisons.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(r["did_not_learn"].startswith("did not learn the task when trained without poison: FF")
                        for r in rows)


# ---- the registry and the typed records ------------------------------------------------------------------
def test_every_section_is_registered_with_its_fragment():
    from importlib import resources

    from ttrlab.report.sections import SECTIONS

    ids = SECTIONS.registered()
    assert ids[0] == "summary" and ids[-1] == "versions" and len(ids) == len(set(ids))
    templates = resources.files("ttrlab").joinpath("report/templates")
    for name in ids:
        section = SECTIONS.get(name)
        assert section.id == name and section.title and templates.joinpath(section.template).is_file(), name


def test_the_store_returns_typed_records_that_still_read_as_the_old_rows(tmp_path):
    configs = upa_configs()[:2]
    db = make_db(tmp_path / "r.sqlite", configs)
    with ResultStore(db) as store:
        store.record(sweep_id=None, kind="train", run_key="newer", config=configs[0].to_dict(),
                     result={"schema_version": 9, "metrics": {"asr": 0.5}})
        runs = store.runs()
        assert [row["run_key"] for row in store.skipped] == ["newer"]
        assert "schema_version 9" in store.skipped[0]["problem"]
    run = runs[0]
    assert isinstance(run, StoredRun) and run.seed == configs[0].seed and run.sweeps == ("synthetic",)
    assert run.result.kind == "train" and run.result.run_key == run.run_key and run.result.versions["torch"] == "test"
    assert run.metrics["clean.accuracy"] == run["metrics"]["clean.accuracy"]
    assert run["result"]["metrics"] == run.result.metrics and run["config"] is run.config and run["sweeps"] == ["synthetic"]
    assert set(dict(run)) == {"id", "kind", "run_key", "status", "config", "metrics", "result", "error", "seconds",
                              "versions", "attempts", "host", "finished_at", "sweeps"}
    with pytest.raises(KeyError):
        run["nope"]


# ---- figures whose text fits ---------------------------------------------------------------------------
def _inside(fig) -> None:
    """Every text of the figure (title, legend, labels) within its canvas; the title above the panels,
    and close to them (no second band of white the title's room was counted twice for)."""
    from ttrlab.report.drawing import TITLE_SIZE

    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    title = fig._suptitle.get_window_extent(renderer)
    assert box.x0 <= title.x0 and title.x1 <= box.x1 and box.y0 <= title.y0 and title.y1 <= box.y1, fig._suptitle.get_text()
    for legend in fig.legends:
        extent = legend.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0
    for ax in fig.axes:
        assert ax.get_tightbbox(renderer).y1 <= title.y0 + 1, fig._suptitle.get_text()
    gap = title.y0 - max(ax.get_tightbbox(renderer).y1 for ax in fig.axes)
    assert gap <= 2 * TITLE_SIZE * fig.dpi / 72, gap


@pytest.mark.parametrize("spec", ["fig5", "fig12", "fig7"])
def test_a_paper_figure_of_one_task_keeps_its_whole_title(spec):
    """One task column makes the narrowest figure, and Fig. 5's title is the longest."""
    from ttrlab.report.figures import FIGURES, FigureData, Line, draw

    figure_spec = next(f for f in FIGURES if f.id == spec)
    line = Line("LoRA BPA ρ=0.02 with a long label", points={1.0: {0: 0.5, 1: 0.6}, 2.0: {0: 0.55, 1: 0.6}})
    attacks = {row.family.name: "bpa" if row.family.name == "backdoor" else "upa" for row in figure_spec.rows}
    panels = {(r, "sst2"): [line] for r in range(len(figure_spec.rows))}
    fig = draw(FigureData(figure_spec, attacks, "", {}, ["sst2"], panels, {}))
    try:
        assert "\n" in fig._suptitle.get_text() or spec != "fig5"  # wrapped, not cut
        _inside(fig)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_finish_wraps_any_title_and_legend_to_the_figure():
    from ttrlab.report.drawing import finish, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 1, figsize=(4.0, 3.0), squeeze=False)
    for i in range(6):
        axes[0][0].plot([0, 1], [i, i + 1], label=f"series number {i} with a long label")
    finish(fig, "A title far longer than a four-inch figure can hold on one line: " * 2, axes)
    try:
        assert fig._suptitle.get_text().count("\n") >= 2
        _inside(fig)
    finally:
        plt.close(fig)
