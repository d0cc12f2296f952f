"""Faults a sweep must survive with nothing lost and a clear record: a database file that is not
ttrlab's (corrupt, truncated, foreign, empty, newer) refused in one line and never written; an
older schema migrated; SIGTERM handled like Ctrl-C; a worker over the spec's memory cap failed
with the reason and redone by --retry-failed; the disk filling while a result is written.

The runs use the "counting" kind (tests/kinds/counting_kind.py), which logs each computation it
finishes and can hold memory (`rss_mb`) or return a large result (`payload`).
"""
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import install_counting_kind
from stored import alive, check_integrity, children, query, rows, stored_rows


def counting_spec(path: Path, xs, seconds: float = 0.0, seeds=(0,), resources=None, **base) -> Path:
    spec = {"name": "faults", "kind": "counting", "seeds": list(seeds), "base": {"seconds": seconds, **base},
            "axes": {"x": list(xs)}}
    if resources:
        spec["resources"] = resources
    path.write_text(yaml.safe_dump(spec))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _v1_database(path: Path) -> None:
    """A database as ttrlab wrote it before claims (schema 1): four tables, no version table."""
    from sqlalchemy import create_engine
    from ttrlab.sweep.store import Base, Metric, Run, Sweep, SweepRun

    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine, tables=[t.__table__ for t in (Sweep, Run, Metric, SweepRun)])
    engine.dispose()
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO runs (kind, run_key, status, config, result, finished_at, attempts) VALUES "
                    "('counting', 'old-run', 'finished', '{}', '{\"metrics\": {\"value\": 1.0}}', "
                    "'2026-01-01 00:00:00', 1)")
        con.execute("INSERT INTO metrics (run_id, name, value) VALUES (1, 'value', 1.0)")
        con.execute("INSERT INTO sweeps (name, spec_sha256, spec_text, created_at, planned_runs) VALUES "
                    "('old', 'abc', '', '2026-01-01 00:00:00', 1)")
        con.execute("INSERT INTO sweep_runs (sweep_id, run_id) VALUES (1, 1)")


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files that must be refused, each with the words its one-line error must contain."""
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is a text file, not a database\n" * 200)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO customers (name) VALUES ('Ada')")
    good = tmp_path / "good.sqlite"
    from ttrlab.sweep import ResultStore

    with ResultStore(good) as store:
        store.record(sweep_id=None, kind="counting", run_key="r", config={}, result={"metrics": {"value": 1.0}})
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[:5000])
    newer = tmp_path / "newer.sqlite"
    shutil.copy(good, newer)
    with sqlite3.connect(newer) as con:
        con.execute("UPDATE ttrlab_meta SET value = '99' WHERE key = 'schema_version'")
    return {"junk": (junk, "file is not a database"),
            "foreign": (foreign, "not a ttrlab results database (it holds tables customers)"),
            "truncated": (truncated, "malformed"),
            "newer": (newer, "written by a newer ttrlab (schema 99")}


@pytest.mark.parametrize("command", ["sweep", "report", "status", "dry-run"])
def test_a_file_that_is_not_a_ttrlab_database_is_refused_and_left_as_it_is(tmp_path, monkeypatch, capsys, command):
    install_counting_kind(tmp_path, monkeypatch)
    from ttrlab.cli import main

    spec = counting_spec(tmp_path / "s.yaml", [1, 2])
    for name, (path, words) in _bad_files(tmp_path).items():
        before = digest(path)
        argv = {"sweep": ["sweep", str(spec), "--db", str(path), "--executor", "inline", "--quiet"],
                "dry-run": ["sweep", str(spec), "--db", str(path), "--dry-run"],
                "report": ["report", "--db", str(path), "--out", str(tmp_path / f"report-{name}")],
                "status": ["status", "--db", str(path)]}[command]
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and words in err and "Traceback" not in err, (name, err)
        assert digest(path) == before, f"{command} changed the {name} file"


def test_readers_never_write_an_empty_file_and_a_sweep_makes_it_a_database(tmp_path, monkeypatch, capsys):
    """`ttrlab report` and `ttrlab status` on an empty file: one line, the file stays empty
    (a report must never write to the database it reads); `ttrlab sweep` may make it one."""
    install_counting_kind(tmp_path, monkeypatch)
    from ttrlab.cli import main

    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for argv in (["report", "--db", str(empty), "--out", str(tmp_path / "report")], ["status", "--db", str(empty)]):
        assert main(argv) == 2
        assert "holds no ttrlab results" in capsys.readouterr().err
        assert empty.stat().st_size == 0
    spec = counting_spec(tmp_path / "s.yaml", [1, 2])
    assert main(["sweep", str(spec), "--db", str(empty), "--executor", "inline", "--quiet"]) == 0
    assert len(rows(empty)) == 2


def test_an_older_schema_is_read_unchanged_and_migrated_by_a_driver(tmp_path, monkeypatch, capsys):
    install_counting_kind(tmp_path, monkeypatch)
    from ttrlab.cli import main
    from ttrlab.sweep import ResultStore
    from ttrlab.sweep.store import SCHEMA_VERSION

    db = tmp_path / "v1.sqlite"
    _v1_database(db)
    before = digest(db)
    with ResultStore(db, create=False) as store:  # a reader: reads schema 1 as it is
        assert store.schema_version == 1 and [r["run_key"] for r in store.runs()] == ["old-run"]
    assert main(["status", "--db", str(db)]) == 0 and "(schema 1)" in capsys.readouterr().out
    assert digest(db) == before

    spec = counting_spec(tmp_path / "s.yaml", [1, 2])
    assert main(["sweep", str(spec), "--db", str(db), "--executor", "inline", "--quiet"]) == 0
    tables = {name for (name,) in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"claims", "ttrlab_meta"} <= tables
    assert query(db, "SELECT value FROM ttrlab_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    stored = {r[0]: r for r in rows(db)}
    assert len(stored) == 3 and stored["old-run"][2] == {"metrics": {"value": 1.0}}
    check_integrity(db)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path, monkeypatch):
    """SIGTERM to the whole process group (what a batch system or `kill` does): exit code 143,
    one line, no traceback; workers gone; no run recorded as failed (the runs in flight were
    cut, not failed); no claim left; the same command resumes and every run is computed once."""
    log = install_counting_kind(tmp_path, monkeypatch)
    from counting_kind import computations

    spec = counting_spec(tmp_path / "s.yaml", range(8), seconds=2.0)
    db = tmp_path / "r.sqlite"
    command = [sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(db), "--workers", "2", "--quiet"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(stored_rows(db) or []) < 1:
        time.sleep(0.2)
    workers = children(driver.pid)
    os.killpg(driver.pid, signal.SIGTERM)
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 143, stderr[-500:]
    assert "interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    time.sleep(1)
    assert workers and not any(alive(pid) for pid in workers)
    stored = rows(db)
    assert 1 <= len(stored) < 8 and all(r[1] == "finished" for r in stored)
    assert query(db, "SELECT count(*) FROM claims") == [(0,)]
    check_integrity(db)

    from ttrlab.sweep import run_sweep

    summary = run_sweep(spec, db, workers=2, progress=False)
    assert summary["failed"] == 0 and summary["already_finished"] == len(stored)
    assert len(rows(db)) == 8
    assert all(n == 1 for n in computations(log).values()) and len(computations(log)) == 8


def test_a_result_that_arrived_before_the_interrupt_is_stored(tmp_path, monkeypatch):
    """Two workers finish together; the interrupt comes while the driver stores the first result,
    with the second already waiting in its queue. The driver stores the second before it stops,
    so the resume computes neither again. (The intermittent failure of the SIGTERM test above:
    it stops the sweep just after the first row appears.)"""
    log = install_counting_kind(tmp_path, monkeypatch)
    from counting_kind import computations
    from ttrlab.sweep import run_sweep
    from ttrlab.sweep.store import ResultStore

    record = ResultStore.record
    calls = []

    def record_then_interrupt(self, *args, **kwargs):
        stored = record(self, *args, **kwargs)
        calls.append(kwargs["run_key"])
        if len(calls) == 1:
            time.sleep(3)  # the other worker's 1-second run has finished and is waiting
            raise KeyboardInterrupt
        return stored

    monkeypatch.setattr(ResultStore, "record", record_then_interrupt)
    spec = counting_spec(tmp_path / "s.yaml", range(4), seconds=1.0)
    db = tmp_path / "r.sqlite"
    summary = run_sweep(spec, db, workers=2, progress=False)
    assert summary["interrupted"] == "SIGINT"
    assert len(calls) == 2 and len(rows(db)) == 2

    monkeypatch.setattr(ResultStore, "record", record)
    again = run_sweep(spec, db, workers=2, progress=False)
    assert again["already_finished"] == 2 and len(rows(db)) == 4
    assert all(n == 1 for n in computations(log).values()) and len(computations(log)) == 4


def test_a_worker_over_the_memory_cap_is_failed_with_the_reason_and_retried(tmp_path, monkeypatch):
    """`resources.memory_gb`: the local pool kills a worker whose resident memory passes it; that
    run is recorded failed with the reason, the others finish; with the cap raised,
    --retry-failed redoes it. (What the kernel's OOM killer does looks the same to the driver:
    a worker killed by SIGKILL, named so in the error.)"""
    install_counting_kind(tmp_path, monkeypatch)
    from ttrlab.sweep import run_sweep
    from ttrlab.sweep.executors import death_reason

    db = tmp_path / "r.sqlite"
    spec = {"name": "memory", "kind": "counting", "seeds": [0], "base": {"seconds": 1.0},
            "resources": {"memory_gb": 0.4}, "include": [{"x": 1}, {"x": 2, "rss_mb": 900}, {"x": 3}]}
    summary = run_sweep(spec, db, workers=1, progress=False)
    assert (summary["finished"], summary["failed"]) == (2, 1)
    (failed,) = [r for r in rows(db) if r[1] == "failed"]
    assert "exceeded resources.memory_gb 0.4" in failed[3] and "resident memory" in failed[3]

    spec["resources"]["memory_gb"] = 4
    again = run_sweep(spec, db, workers=1, progress=False, retry_failed=True)
    assert (again["ran"], again["finished"], again["already_finished"]) == (1, 1, 2)
    assert all(r[1] == "finished" for r in rows(db))
    assert "out-of-memory killer" in death_reason(-signal.SIGKILL) and death_reason(7) == "exit code 7"


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return made.returncode == 0


def test_a_full_disk_stops_the_sweep_in_one_line_and_keeps_what_was_stored(tmp_path, monkeypatch):
    """The database lives on a 1 MiB tmpfs and every result carries 150 kB: the disk fills a few
    runs in. The sweep stops with one line (not a traceback, not a run recorded as failed); the
    runs stored before are whole and the file passes integrity_check; with space again, the same
    sweep resumes and finishes."""
    log = install_counting_kind(tmp_path, monkeypatch)
    from counting_kind import computations
    from ttrlab.core.errors import UserError
    from ttrlab.sweep import run_sweep

    disk = tmp_path / "small-disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN), so no disk can be filled")
    try:
        db = disk / "r.sqlite"
        spec = counting_spec(tmp_path / "s.yaml", range(12), payload=150_000)
        with pytest.raises(UserError) as stopped:
            run_sweep(spec, db, executor="inline", progress=False)
        message = str(stopped.value)
        assert "\n" not in message and "full" in message and "re-run the same command to resume" in message
        stored = rows(db)
        assert 1 <= len(stored) < 12 and all(r[1] == "finished" and len(r[2]["payload"]) == 150_000 for r in stored)
        assert query(db, "PRAGMA integrity_check") == [("ok",)]

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        summary = run_sweep(spec, db, executor="inline", progress=False, lease=1.0)
        assert summary["failed"] == 0 and summary["already_finished"] == len(stored)
        assert len(rows(db)) == 12
        check_integrity(db)
        # the run whose result did not fit was computed, then computed again: the only one twice
        assert sorted(computations(log).values()) == [1] * 11 + [2]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_url_for_a_database_kind_that_does_not_exist_is_one_line(tmp_path, monkeypatch, capsys):
    install_counting_kind(tmp_path, monkeypatch)
    from ttrlab.cli import main

    spec = counting_spec(tmp_path / "s.yaml", [1])
    for url, words in (("foo://", "unknown database kind 'foo'"), ("postgresql://u:secret@[::1", "not a valid"),
                       ("mysql://u@localhost/db", "needs a driver that is not installed")):
        assert main(["sweep", str(spec), "--db", url, "--executor", "inline", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and words in err and "secret" not in err, err
