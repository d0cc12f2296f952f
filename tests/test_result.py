"""The result document: one typed schema for every kind; documents of schema 1 (written by
ttrlab 0.1.0 before the pipeline was shared, `tests/data/schema1_train_run.json` is a real one
from the main job) still load, still resume in a database, and still reach the report."""
import json
from pathlib import Path

import pytest

from ttrlab.core.result import CORE_SECTIONS, SCHEMA_VERSION, RunResult
from ttrlab.sweep.store import ResultStore

OLD = json.loads((Path(__file__).parent / "data" / "schema1_train_run.json").read_text())


def test_schema1_document_loads_as_a_train_result():
    result = RunResult.from_dict(OLD["result"])
    assert (result.kind, result.schema_version, result.runtime) == ("train", 1, None)
    assert result.metrics["clean"]["accuracy"] == pytest.approx(0.75)
    assert result.to_dict()["metrics"] == OLD["result"]["metrics"]


def test_document_round_trip_and_sections():
    result = RunResult(kind="generative", run_key="k", config={"seed": 0}, versions={}, runtime={"device": "cpu"},
                       data={}, poison={}, method={"name": "lora"}, metrics={"asr": 0.5},
                       sections={"generations": {"triggered": []}})
    document = result.to_dict()
    assert document["schema_version"] == SCHEMA_VERSION and document["generations"] == {"triggered": []}
    assert set(CORE_SECTIONS) <= set(document) and RunResult.from_dict(document).to_dict() == document
    with pytest.raises(ValueError, match="shadow core sections"):
        RunResult(**{**result.__dict__, "sections": {"metrics": {}}}).to_dict()
    with pytest.raises(ValueError, match="schema_version 7"):
        RunResult.from_dict({**document, "schema_version": 7})


def test_a_database_of_schema1_runs_resumes_and_reports(tmp_path):
    """A main-job database written by 0.1.0: its run counts as done for today's spec (same key),
    and the report reads it."""
    from ttrlab.cli.run import main_job_spec
    from ttrlab.report import build_report
    from ttrlab.sweep import load_spec, plan

    db = tmp_path / "old.sqlite"
    with ResultStore(db) as store:
        store.record(sweep_id=None, kind="train", run_key=OLD["run_key"], config=OLD["config"], result=OLD["result"],
                     seconds=30.0)
    planned = plan(load_spec(main_job_spec()), db)
    assert [r.run_key for r in planned["finished"]] == [OLD["run_key"]] and len(planned["todo"]) == 19
    index = build_report(db, tmp_path / "report")
    assert "bpa" in index.read_text(encoding="utf-8")
