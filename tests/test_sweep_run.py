"""Running sweeps: the local process pool, failures, resume, retry, worker death, Ctrl-C-free
stop, and a real SIGKILL of a `ttrlab sweep` subprocess followed by a resume.

The runs here use a test-only run kind ("sleepy": sleeps, reports steps, returns metrics
derived from its config, and the CUDA_VISIBLE_DEVICES its process saw) written into tmp_path and loaded through TTRLAB_PLUGINS, the same
way a user adds a kind — so it reaches the spawned workers and the CLI subprocess.

The store tests that matter (resume, SIGKILL-then-resume, two concurrent drivers) run on both
backends through `store_db` (conftest.py): an SQLite file and a throw-away PostgreSQL database.
Their checks read the database through SQLAlchemy, the same SQL on both; SQLite's own
`PRAGMA integrity_check` is added where the backend is SQLite.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import install_plugin_kind
from stored import alive, check_integrity, children, rows, snapshot, stored_rows

SLEEPY_KIND = textwrap.dedent('''
    import hashlib, json, os, time
    from ttrlab.core.errors import UserError, did_you_mean
    from ttrlab.kinds.registry import RUN_KINDS

    DEFAULTS = {"x": 0.0, "seconds": 0.05, "fail": False, "die": False, "seed": 0}

    class Config(dict):
        def to_dict(self):
            return dict(self)

    class Sleepy:
        def config_from_dict(self, values):
            for key in values:
                if key not in DEFAULTS:
                    raise UserError(f"unknown config key {key!r}{did_you_mean(key, DEFAULTS)}")
            return Config({**DEFAULTS, **values})

        def run_key(self, config):
            return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:24]

        def run(self, config, progress=None):
            for step in range(1, 4):
                time.sleep(config["seconds"] / 3)
                if progress:
                    progress("step", step=step, total=3, loss=1.0 / step)
            if config["die"]:
                os._exit(7)
            if config["fail"]:
                raise RuntimeError(f"asked to fail at x={config['x']}")
            return {"metrics": {"value": config["x"] * 10 + config["seed"], "nested": {"pid": os.getpid(), "none": None}},
                    "versions": {"sleepy": "1"}, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    if "sleepy" not in RUN_KINDS:
        RUN_KINDS.register("sleepy")(Sleepy())
''')


@pytest.fixture
def sleepy(tmp_path, monkeypatch):
    """Make the 'sleepy' kind importable here, in spawned workers and in subprocesses."""
    return install_plugin_kind(tmp_path, monkeypatch, "sleepy_kind", SLEEPY_KIND)


def sleepy_spec(path: Path, xs, seconds=0.05, seeds=(0, 1), **extra) -> Path:
    spec = {"name": "sleepy-sweep", "kind": "sleepy", "seeds": list(seeds), "base": {"seconds": seconds},
            "axes": {"x": list(xs)}, **extra}
    path.write_text(yaml.safe_dump(spec))
    return path


def test_local_pool_runs_everything_once_and_resumes(sleepy, tmp_path, store_db):
    from ttrlab.sweep import ResultStore, run_sweep

    spec = sleepy_spec(tmp_path / "s.yaml", [1.0, 2.0, 3.0])
    db = store_db
    summary = run_sweep(spec, db, workers=2, progress=False)
    assert (summary["planned"], summary["ran"], summary["finished"], summary["failed"]) == (6, 6, 6, 0)
    with ResultStore(db) as store:
        runs = store.runs()
    assert sorted(r["metrics"]["value"] for r in runs) == [10, 11, 20, 21, 30, 31]
    assert all("nested.pid" in r["metrics"] and "nested.none" not in r["metrics"] for r in runs)
    # long-lived workers: 2 processes served all 6 runs
    assert len({r["metrics"]["nested.pid"] for r in runs}) == 2
    before = snapshot(db)
    again = run_sweep(spec, db, workers=2, progress=False)
    assert (again["already_finished"], again["ran"]) == (6, 0)
    assert len(rows(db)) == 6 and snapshot(db) == before
    check_integrity(db)


def test_failing_run_is_recorded_and_does_not_stop_the_sweep(sleepy, tmp_path, store_db):
    from ttrlab.sweep import ResultStore, run_sweep

    spec = sleepy_spec(tmp_path / "s.yaml", [1.0, 2.0], seeds=[0],
                       include=[{"x": 9.0, "fail": True}])
    db = store_db
    summary = run_sweep(spec, db, workers=2, progress=False)
    assert (summary["finished"], summary["failed"]) == (2, 1)
    assert "asked to fail at x=9.0" in summary["failures"][0][1]
    with ResultStore(db) as store:
        failed = store.runs(status="failed")
    assert len(failed) == 1 and "RuntimeError: asked to fail" in failed[0]["error"] and failed[0]["metrics"] == {}
    skipped = run_sweep(spec, db, workers=1, progress=False)
    assert (skipped["ran"], skipped["skipped_failed"]) == (0, 1)
    retried = run_sweep(spec, db, workers=1, progress=False, retry_failed=True)
    assert (retried["ran"], retried["failed"]) == (1, 1)
    with ResultStore(db) as store:
        assert store.runs(status="failed")[0]["attempts"] == 2
    assert len(rows(db)) == 3


def test_a_worker_that_dies_fails_its_run_and_is_replaced(sleepy, tmp_path):
    from ttrlab.sweep import run_sweep

    spec = sleepy_spec(tmp_path / "s.yaml", [1.0, 2.0, 3.0], seeds=[0], include=[{"x": 5.0, "die": True}])
    summary = run_sweep(spec, tmp_path / "r.sqlite", workers=1, progress=False)
    assert (summary["finished"], summary["failed"]) == (3, 1)
    assert "worker process died (exit code 7)" in summary["failures"][0][1]


def test_inline_executor_matches_local(sleepy, tmp_path):
    from ttrlab.sweep import ResultStore, run_sweep

    spec = sleepy_spec(tmp_path / "s.yaml", [1.0, 2.0])
    run_sweep(spec, tmp_path / "a.sqlite", executor="inline", progress=False)
    run_sweep(spec, tmp_path / "b.sqlite", executor="local", workers=2, progress=False)
    values = []
    for name in ("a", "b"):
        with ResultStore(tmp_path / f"{name}.sqlite") as store:
            values.append(sorted((r["run_key"], r["metrics"]["value"]) for r in store.runs()))
    assert values[0] == values[1] and len(values[0]) == 4


def test_bad_executor_and_workers_are_user_errors(sleepy, tmp_path):
    from ttrlab.core.errors import UserError
    from ttrlab.sweep import run_sweep

    spec = sleepy_spec(tmp_path / "s.yaml", [1.0])
    with pytest.raises(UserError, match="unknown executor 'lcoal' \\(did you mean 'local'\\?\\)"):
        run_sweep(spec, tmp_path / "r.sqlite", executor="lcoal", progress=False)
    with pytest.raises(UserError, match="workers 0 must be >= 1"):
        run_sweep(spec, tmp_path / "r.sqlite", workers=0, progress=False)
    with pytest.raises(UserError, match="is a directory"):
        run_sweep(spec, tmp_path, progress=False)


def test_cli_dry_run_lists_runs_and_writes_nothing(sleepy, tmp_path):
    spec = sleepy_spec(tmp_path / "s.yaml", [1.0, 2.0])
    db = tmp_path / "r.sqlite"
    out = subprocess.run([sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(db), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "4 runs" in out.stdout and "4 would run" in out.stdout
    assert out.stdout.count("x=1.0 seed") == 2
    assert not db.exists()


def test_cli_bad_spec_is_one_line_exit_2(sleepy, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"kind": "sleepy", "axes": {"x": [1.0], "secnds": [1]}}))
    out = subprocess.run([sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(tmp_path / "r.sqlite")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "unknown config key 'secnds' (did you mean 'seconds'?)" in out.stderr


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_sigkill_mid_sweep_then_resume(sleepy, tmp_path, store_db):
    """Kill the `ttrlab sweep` driver with SIGKILL while runs are in flight: the database keeps
    every finished run, no half-written row, no duplicate; the orphaned workers exit; the same
    command then finishes the rest without redoing or touching what was stored."""
    spec = sleepy_spec(tmp_path / "s.yaml", [float(x) for x in range(8)], seconds=0.6, seeds=[0, 1])
    db = store_db
    command = [sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(db), "--workers", "2", "--quiet"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    finished_before = []
    while time.monotonic() < deadline:
        time.sleep(0.2)
        stored = stored_rows(db)
        finished_before = [r for r in stored or [] if r[1] == "finished"]
        if len(finished_before) >= 3:
            break
    assert 3 <= len(finished_before) < 16, "the sweep should be mid-way when killed"
    workers = children(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=10)
    assert driver.returncode == -signal.SIGKILL

    check_integrity(db)
    after_kill = snapshot(db)
    assert {r[0] for r in finished_before} <= set(after_kill)

    worker_deadline = time.monotonic() + 15
    while any(alive(pid) for pid in workers) and time.monotonic() < worker_deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers), "orphaned workers must exit when the driver is killed"

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    final = rows(db)
    assert len(final) == 16 and len({r[0] for r in final}) == 16
    assert all(r[1] == "finished" for r in final)
    check_integrity(db)
    resumed_snapshot = snapshot(db)
    for key, stored in after_kill.items():  # nothing stored before the kill was redone or changed
        assert resumed_snapshot[key] == stored
    values = sorted(r[2]["metrics"]["value"] for r in final)
    assert values == sorted(x * 10 + s for x in range(8) for s in (0, 1))
    assert f"{len(after_kill)} already finished" in resumed.stdout

@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_ctrl_c_stops_cleanly_and_keeps_finished_runs(sleepy, tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does): exit code 130, one
    message, no traceback, workers gone, finished runs stored; the resume does the rest."""
    # 10 runs of 3 s on 2 workers: after the first stored row at least ~12 s of work remain, so
    # the interrupt lands mid-sweep even on an idle, fast machine (1.5 s runs raced there, and
    # once 6 runs of 3 s finished before the interrupt in a clean-checkout CI run).
    spec = sleepy_spec(tmp_path / "s.yaml", [float(x) for x in range(10)], seconds=3.0, seeds=[0])
    db = tmp_path / "r.sqlite"
    command = [sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(db), "--workers", "2", "--quiet"]
    # SIGINT as a terminal leaves it: a test run started in the background (`pytest &` in a
    # script) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if len(stored_rows(db) or []) >= 1:
            break
    workers = children(driver.pid)
    os.killpg(driver.pid, signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 130, (len(rows(db)), stderr[-300:])
    assert "interrupted" in stderr and "Traceback" not in stderr
    time.sleep(1)
    assert not any(alive(pid) for pid in workers)
    stored = rows(db)
    assert 1 <= len(stored) < 10 and all(r[1] == "finished" for r in stored)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0 and len(rows(db)) == 10


def test_piped_sweep_prints_one_line_per_finished_run(sleepy, tmp_path):
    """stdout not a terminal: one flushed line per run as it ends, numbered in order of
    completion (the order the runs reach the database), failures with their last error line;
    --quiet prints none. stderr, not a terminal either, gets no progress bars."""
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "piped", "kind": "sleepy", "seeds": [0], "base": {"seconds": 0.05},
        "grids": [{"name": "slow", "axes": {"x": [1.0]}, "base": {"seconds": 1.5}},  # first out, last in
                  {"name": "quick", "axes": {"x": [2.0, 3.0, 4.0]}, "include": [{"x": 9.0, "fail": True}]}]}))
    db = tmp_path / "r.sqlite"
    command = [sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(db), "--workers", "2"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stderr  # one run failed
    lines = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == [f"[{i}/5" for i in range(1, 6)]
    from ttrlab.sweep import load_spec

    labels = {run.run_key: run.label() for run in load_spec(spec).expand().runs}
    for done, (line, (key, status, _, _)) in enumerate(zip(lines, rows(db)), start=1):  # rows: in stored order
        shown = "FAILED" if status == "failed" else "finished"
        assert line.startswith(f"[{done}/5] {shown}  sleepy {labels[key]}  "), (line, labels[key])
        assert line.endswith(" s: RuntimeError: asked to fail at x=9.0" if status == "failed" else " s"), line
    assert out.stdout.splitlines()[-1].startswith("sweep 'piped': 5 runs planned")  # the summary comes last
    messages = "\n".join(line for line in out.stderr.splitlines() if not line.startswith("plan: sweep 'piped'"))
    assert "━" not in messages and "runs" not in messages.split("failed:")[0]  # no bars in a pipe (the plan: stderr)

    quiet = subprocess.run(command + ["--retry-failed", "--quiet"], capture_output=True, text=True, timeout=180)
    assert quiet.returncode == 1 and quiet.stdout.count("\n") == 1 and quiet.stdout.startswith("sweep 'piped'")


def test_finished_line_formats():
    from ttrlab.sweep.outcome import Outcome
    from ttrlab.sweep.monitor import finished_line
    from ttrlab.sweep.spec import PlannedRun

    run = PlannedRun("train", None, {"task": "sst2", "method": "ff", "attack": "upa", "rate": 0.1, "seed": 0}, "k", "g")
    assert finished_line(3, 20, Outcome(run, {}, None, None, 41.23), 41.23) == \
        "[3/20] finished  train sst2 ff upa ρ=0.1 seed 0  41.2 s"
    failed = Outcome(run, None, "Traceback (most recent call last):\n  File ...\nValueError: bad\n\n", None, 2.0)
    assert finished_line(4, 20, failed, 2.0) == "[4/20] FAILED  train sst2 ff upa ρ=0.1 seed 0  2.0 s: ValueError: bad"
    assert finished_line(5, 20, failed, None) == "[5/20] FAILED  train sst2 ff upa ρ=0.1 seed 0: ValueError: bad"
