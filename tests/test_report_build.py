"""Reports from a results database: aggregates, LoRA-vs-FF statistics, the paper's figures made
from whatever the database holds (and skipped with a note otherwise), Table 2, escaping.

The databases here hold synthetic result documents written through the real store (the
numbers are made up, with LoRA degrading faster than FF under UPA); the end-to-end test with
real training is in test_sweep_train.py."""
import csv
import json
import re

import numpy as np
import pytest

from ttrlab.config import RunConfig
from ttrlab.errors import UserError
from ttrlab.report import build_report
from ttrlab.report.stats import compare
from ttrlab.sweep.store import ResultStore

EVIL = "<img src=x onerror=alert(1)>"


def fake_result(config: RunConfig, rng) -> dict:
    slope = 0.5 if config.method == "lora" else 0.2
    acc = 0.9 - (slope * config.rate if config.attack == "upa" else 0) + rng.normal(0, 0.01)
    metrics = {"clean": {"accuracy": acc, "precision": acc - 0.01, "recall": acc + 0.02, "f1": acc},
               "triggered": None, "asr": None}
    if config.attack == "bpa":
        asr = min(1.0, config.rate * 40 * (0.5 if config.method == "lora" else 1.0) * (config.rank / 8) ** 0.5) + rng.normal(0, 0.01)
        t = acc - asr / 2
        metrics["triggered"] = {"accuracy": t, "precision": t - 0.1, "recall": 1.0, "f1": t}
        metrics["asr"] = asr
    return {"metrics": metrics, "versions": {"torch": "test", "ttrlab": "0.1.0"}}


def make_db(path, configs, sweep_name="synthetic", spec_text="name: synthetic\n", seed=0):
    rng = np.random.default_rng(seed)
    with ResultStore(path) as store:
        sweep = store.register_sweep(sweep_name, "0" * 24, spec_text)
        for config in configs:
            store.record(sweep_id=sweep, kind="train", run_key=config.run_key(), config=config.to_dict(),
                         result=fake_result(config, rng), seconds=2.0)
    return path


def grid(seeds=(0, 1, 2), **fixed):
    base = dict(task="sst2", lr_preset="cpu", train_size=64, max_steps=3, **fixed)
    return [RunConfig(**base, seed=s) for s in seeds]


def upa_configs():
    configs = []
    for method in ("ff", "lora"):
        configs += grid(method=method, attack="bpa", rate=0.0)
        for rate in (0.1, 0.3):
            configs += grid(method=method, attack="upa", rate=rate)
    return configs


@pytest.fixture(scope="module")
def upa_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("upa")
    db = make_db(root / "r.sqlite", upa_configs())
    return db, build_report(db, root / "report")


def test_report_files_and_figures_present(upa_report):
    db, index = upa_report
    out = index.parent
    for name in ("index.html", "aggregates.csv", "aggregates.md", "comparisons.csv", "comparisons.md", "figures.json"):
        assert (out / name).is_file(), name
    for fig in ("fig1", "fig6"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000
        assert (out / "figures" / f"{fig}.svg").read_text().lstrip().startswith("<?xml")
    html = index.read_text()
    assert html.count('<img src="data:image/svg+xml;base64,') == 2  # Fig. 1 and Fig. 6: all this grid allows
    # the BPA / rank / variance figures are skipped with a note, Table 2 too
    for number in (2, 4, 5, 7, 8, 9, 10, 11, 12):
        assert f"Fig. {number} skipped" in html
    assert "Table 2 skipped" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_figure_numbers_are_mean_and_std_over_seeds(upa_report):
    db, index = upa_report
    tables = json.loads((index.parent / "figures.json").read_text())
    with ResultStore(db) as store:
        runs = store.runs()
    lora_at_03 = [r["metrics"]["clean.accuracy"] for r in runs
                  if r["config"]["method"] == "lora" and r["config"]["rate"] == 0.3]
    point = next(p for p in tables["fig1"] if p["series"].startswith("LoRA") and p["x"] == 0.3)
    assert point["n"] == 3
    assert point["mean"] == pytest.approx(np.mean(lora_at_03))
    assert point["std"] == pytest.approx(np.std(lora_at_03, ddof=1))
    ff_at_0 = next(p for p in tables["fig1"] if p["series"] == "FF" and p["x"] == 0.0)
    assert ff_at_0["n"] == 3  # the BPA-at-rate-0 runs are the clean point of the UPA figure
    assert {p["row"] for p in tables["fig6"]} == {"UPA: Accuracy (clean test)", "UPA: Precision (clean test)",
                                                  "UPA: Recall (clean test)", "UPA: F1 (clean test)"}


def test_comparisons_match_the_statistics(upa_report):
    db, index = upa_report
    with ResultStore(db) as store:
        runs = store.runs()
    lora = [r["metrics"]["clean.accuracy"] for r in runs if r["config"]["method"] == "lora" and r["config"]["rate"] == 0.3]
    ff = [r["metrics"]["clean.accuracy"] for r in runs if r["config"]["method"] == "ff" and r["config"]["rate"] == 0.3]
    with open(index.parent / "comparisons.csv") as handle:
        rows = list(csv.DictReader(handle))
    row = next(r for r in rows if r["attack"] == "upa" and r["rate"] == "0.3" and r["metric"] == "clean.accuracy")
    expected = compare(lora, ff)
    assert float(row["difference"]) == pytest.approx(expected.difference)
    assert float(row["p_value"]) == pytest.approx(expected.p_value)
    assert float(row["hedges_g"]) == pytest.approx(expected.hedges_g)
    assert float(row["difference"]) < 0  # LoRA lost more accuracy (the synthetic slope says so)
    with open(index.parent / "aggregates.csv") as handle:
        aggregates = list(csv.DictReader(handle))
    cell = next(r for r in aggregates if r["method"] == "lora" and r["rate"] == "0.3" and r["metric"] == "clean.accuracy")
    assert (int(cell["n"]), cell["seeds"]) == (3, "0 1 2")
    assert float(cell["std"]) == pytest.approx(np.std(lora, ddof=1))
    assert float(cell["ci_low"]) <= float(cell["mean"]) <= float(cell["ci_high"])
    assert "| clean.accuracy |" in (index.parent / "aggregates.md").read_text()


def test_full_grid_draws_every_figure_and_table2(tmp_path):
    configs = []
    for method in ("ff", "lora"):
        configs += grid(seeds=(0, 1), method=method, attack="bpa", rate=0.0)
        configs += grid(seeds=(0, 1), method=method, attack="bpa", rate=0.02)
        configs += grid(seeds=(0, 1), method=method, attack="upa", rate=0.2)
    for rank in (4, 16):
        for attack, rate in (("bpa", 0.0), ("upa", 0.2), ("bpa", 0.02)):
            configs += grid(seeds=(0, 1), method="lora", rank=rank, attack=attack, rate=rate)
    for k in (0.01, 1.0):
        for attack, rate in (("bpa", 0.0), ("upa", 0.2), ("bpa", 0.02)):
            configs += grid(seeds=(0, 1), method="lora", init_scale=k, attack=attack, rate=rate)
    for init in ("gaussian", "xavier_normal"):
        configs += grid(seeds=(0, 1), method="lora", init=init, init_scale=2.0, attack="bpa", rate=0.02)
    index = build_report(make_db(tmp_path / "r.sqlite", configs), tmp_path / "report")
    html = index.read_text()
    assert "skipped" not in html.split('id="table2"')[0]  # no figure skipped
    drawn = sorted(p.stem for p in (tmp_path / "report" / "figures").glob("*.png"))
    assert drawn == sorted(f"fig{n}" for n in (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12))
    tables = json.loads((tmp_path / "report" / "figures.json").read_text())
    ranks = {p["x"] for p in tables["fig4"] if p["series"] == "LoRA BPA ρ=0.02"}
    assert ranks == {4.0, 8.0, 16.0}
    ff_line = [p for p in tables["fig4"] if p["series"] == "FF BPA ρ=0.02"]
    assert ff_line and all(p["n"] == 2 for p in ff_line)  # the FF reference line
    scales = {p["x"] for p in tables["fig5"] if p["series"] == "LoRA clean"}
    assert sorted(scales) == pytest.approx([0.01, 1 / 3, 1.0])  # the default k = 1/3 is the unset init_scale
    table2 = html.split('id="table2"')[1].split("</section>")[0]
    assert "gaussian" in table2 and "xavier_normal" in table2 and "triggered" in table2
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d", table2)


def test_different_settings_never_share_a_line(tmp_path):
    """Two sweeps with different step counts in one database make two figure variants."""
    configs = []
    for steps in (3, 5):
        for rate in (0.1, 0.3):
            configs += [c.replace(max_steps=steps) for c in grid(seeds=(0, 1), method="ff", attack="upa", rate=rate)]
    index = build_report(make_db(tmp_path / "r.sqlite", configs), tmp_path / "report")
    assert sorted(p.stem for p in (tmp_path / "report" / "figures").glob("fig1*.png")) == ["fig1a", "fig1b"]
    assert "max_steps=3" in index.read_text() and "max_steps=5" in index.read_text()


def test_user_strings_are_escaped(tmp_path):
    configs = grid(seeds=(0, 1), method="ff", attack="upa", rate=0.1) + grid(seeds=(0, 1), method="ff", attack="upa", rate=0.2)
    db = make_db(tmp_path / "r.sqlite", configs, sweep_name=f"sweep {EVIL}",
                 spec_text="name: x\n# </pre><script>alert('spec')</script>\n")
    with ResultStore(db) as store:
        bad = dict(configs[0].to_dict(), task=EVIL)
        store.record(sweep_id=None, kind="train", run_key="evil" * 6, config=bad,
                     result={"metrics": {"clean": {"accuracy": 0.5}}, "versions": {EVIL: "<b>v9</b>"}})
        store.record(sweep_id=None, kind="train", run_key="fail" * 6, config=bad, error=f"Traceback\nValueError: {EVIL}")
    html = build_report(db, tmp_path / "report").read_text()
    assert "<script" not in html and EVIL not in html and "<b>v9</b>" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 3
    assert "&lt;/pre&gt;&lt;script&gt;" in html


def test_empty_and_missing_databases(tmp_path):
    with ResultStore(tmp_path / "empty.sqlite"):
        pass
    html = build_report(tmp_path / "empty.sqlite", tmp_path / "report").read_text()
    assert "Fig. 1 skipped" in html and "Table 2 skipped" in html
    with pytest.raises(UserError, match="does not exist"):
        build_report(tmp_path / "missing.sqlite", tmp_path / "report2")


def test_report_cli(tmp_path, capsys):
    from ttrlab.cli import main

    db = make_db(tmp_path / "r.sqlite", upa_configs()[:6])
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "index.html")
    assert main(["report", "--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
