"""`ttrlab import`: someone else's per-seed results stored as external runs with their
provenance, decided by the claims engine like ttrlab's own — the paper's raw Fig. 1 data
(../shared/data/official/vary_pr.json) and the documented CSV layout."""
from __future__ import annotations

import json
import math

import pytest

from ttrlab.cli import main
from ttrlab.external import KIND, import_file, read
from ttrlab.report.aggregate import build_cells
from ttrlab.report.claims import check, load_claims
from ttrlab.sweep.store import ResultStore

from conftest import SHARED_DATA

OFFICIAL = SHARED_DATA / "official" / "vary_pr.json"
OFFICIAL_CLAIMS = "official"  # shipped: report/claims/official_claims.yaml


def _runs(db):
    with ResultStore(db, create=False) as store:
        return store.runs()


def _claims(tmp_path, text: str):
    path = tmp_path / "claims.yaml"
    path.write_text(text, encoding="utf-8")
    return load_claims(path)


@pytest.mark.needs_data("official")
def test_the_papers_raw_data_imports_once_with_its_numbers_and_provenance(tmp_path, capsys):
    db = tmp_path / "paper.sqlite"
    assert main(["import", str(OFFICIAL), "--format", "paper-vary-pr", "--db", str(db)]) == 0
    assert "320 runs imported (0 already stored)" in capsys.readouterr().out
    assert main(["import", str(OFFICIAL), "--format", "paper-vary-pr", "--db", str(db)]) == 0
    assert "0 runs imported (320 already stored)" in capsys.readouterr().out
    runs = _runs(db)
    assert len(runs) == 320 and {r["kind"] for r in runs} == {KIND}
    # a value read back equals the file's: QNLI, rate 0.2, LoRA ("1"), seed 3, accuracy
    raw = json.loads(OFFICIAL.read_text())[0]["qnli"]["-1"]["y"]["1.0"]["google-bert/bert-large-uncased"]["0.2"]["1"]
    run = next(r for r in runs if r["config"]["task"] == "qnli" and r["config"]["rate"] == 0.2
               and r["config"]["method"] == "lora" and r["config"]["seed"] == 3)
    assert run["metrics"]["clean.accuracy"] == raw[2][0] and run["config"]["lr"] == 3e-5
    assert run["result"]["external"]["sha256"] and "LoRA-sSecurity" in run["config"]["source"]


@pytest.mark.needs_data("official")
def test_the_papers_raw_data_gets_per_task_verdicts_with_the_seed_as_unit(tmp_path):
    db = tmp_path / "paper.sqlite"
    import_file(OFFICIAL, "paper-vary-pr", db)
    verdicts = check(build_cells(_runs(db)), load_claims(OFFICIAL_CLAIMS))
    by_id = {d.claim.id: d for d in verdicts.decisions}
    assert set(by_id) >= {"fig1", "fig1-sst2", "fig1-cola", "fig1-qnli", "fig1-qqp"}
    for task in ("sst2", "cola", "qnli", "qqp"):
        assert by_id[f"fig1-{task}"].test.n == 5  # five seeds, the 8 rates averaged within each
    assert by_id["fig1"].test.n == 20  # task × seed


def test_a_csv_of_per_seed_results_is_decided_by_a_declared_claim(tmp_path):
    # planted: LoRA 3 points below FF in every seed (± a little), 6 seeds, 2 rates
    rows = ["task,method,attack,rate,seed,lr,clean.accuracy"]
    for seed in range(6):
        for rate in (0.1, 0.3):
            wobble = 0.002 * math.sin(seed * 7 + rate * 10)
            rows.append(f"sst2,ff,upa,{rate},{seed},1e-5,{0.90 + wobble:.4f}")
            rows.append(f"sst2,lora,upa,{rate},{seed},1e-4,{0.87 - wobble:.4f}")
    path = tmp_path / "theirs.csv"
    path.write_text("\n".join(rows) + "\n")
    db = tmp_path / "r.sqlite"
    assert main(["import", str(path), "--format", "csv", "--db", str(db), "--source", "a colleague's runs"]) == 0
    declared = _claims(tmp_path, """
version: 1
sequential: {looks: [6]}
claims:
  - {id: gap, figure: "1", role: primary, kind: external, claim: LoRA below FF, design: contrast,
     baseline: full, where: {attack: upa, method: lora}, metric: clean.accuracy, expect: lower}
""")
    decision = check(build_cells(_runs(db)), declared).decisions[0]
    assert decision.test.n == 6 and decision.verdict.startswith("as the paper")
    assert decision.test.mean == pytest.approx(-0.03, abs=0.003)


def test_imported_runs_never_meet_ttrlabs_own_claims(tmp_path):
    """Imported runs are of their own kind: the paper's claims file (kind train) finds none."""
    path = tmp_path / "theirs.csv"
    path.write_text("task,method,attack,rate,seed,clean.accuracy\nsst2,ff,upa,0.1,0,0.9\nsst2,lora,upa,0.1,0,0.8\n")
    db = tmp_path / "r.sqlite"
    import_file(path, "csv", db, source="test")
    decisions = check(build_cells(_runs(db))).decisions
    assert all(not d.testable for d in decisions if d.claim.role == "primary")


BAD_CSV = [
    ("task,method,rate,seed,clean.accuracy\nsst2,ff,0.1,0,0.9\n", "missing column(s) attack"),
    ("task,method,attack,rate,seed\nsst2,ff,upa,0.1,0\n", "no metric column"),
    ("task,method,attack,rate,seed,clean.accuracy\nsst2,ff,upa,0.1,zero,0.9\n", "seed 'zero' is not an integer"),
    ("task,method,attack,rate,seed,clean.accuracy\nsst2,ff,upa,0.1,0,nan\n", "clean.accuracy: nan is not a finite"),
    ("task,method,attack,rate,seed,clean.accuracy\nsst2,ff,upa,0.1,0,0.9\nsst2,ff,upa,0.1,0,0.8\n", "appears twice"),
    ("task,method,attack,rate,seed,clean.accuracy\nsst2,ff,upa,0.1,0\n", "fewer cells than the header"),
    ("task,method,attack,rate,seed,clean.accuracy\n,ff,upa,0.1,0,0.9\n", "task is empty"),
]


@pytest.mark.parametrize("text,message", BAD_CSV)
def test_a_bad_csv_is_one_line_and_stores_nothing(tmp_path, capsys, text, message):
    db = tmp_path / "r.sqlite"
    good = tmp_path / "good.csv"
    good.write_text("task,method,attack,rate,seed,clean.accuracy\nsst2,ff,upa,0.1,0,0.9\n")
    import_file(good, "csv", db, source="before")
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    assert main(["import", str(bad), "--format", "csv", "--db", str(db), "--source", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert len(_runs(db)) == 1  # what was stored before is all there is


@pytest.mark.needs_data("official")
def test_a_damaged_copy_of_the_papers_file_is_refused(tmp_path, capsys):
    documents = json.loads(OFFICIAL.read_text())
    documents[0]["sst2"]["-1"]["y"]["1.0"]["google-bert/bert-large-uncased"]["0.1"]["0"][0][0] += 0.01
    damaged = tmp_path / "vary_pr.json"
    damaged.write_text(json.dumps(documents))
    db = tmp_path / "r.sqlite"
    assert main(["import", str(damaged), "--format", "paper-vary-pr", "--db", str(db)]) == 2
    assert "disagrees with the file's summary document" in capsys.readouterr().err
    assert not db.exists() or _runs(db) == []


def test_a_csv_needs_its_provenance():
    with pytest.raises(Exception, match="needs --source"):
        read(__file__, "csv")
