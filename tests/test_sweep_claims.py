"""Drivers sharing one results database, on SQLite and on a real PostgreSQL server
(`store_db`): claims split the runs so each is computed once; a killed driver's claimed run is
taken over by another once its lease expires, and computed once there; the claim and record
races hold under threads; `ttrlab status` shows what runs where.

Computations are counted by the "counting" kind (tests/kinds/counting_kind.py), which logs
every computation it finishes, so "once" means computed once, not stored once.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import yaml
from conftest import install_counting_kind
from stored import check_integrity, query, rows


# Each driver is a `python -c` process without the CLI's imports (the training stack, ~10 s each
# on this machine) that waits for the test's "go", so the processes really hit the database at
# the same moment.
TOGETHER = textwrap.dedent('''
    import sys, time
    from pathlib import Path

    ready, go, what, db = sys.argv[1:5]
    from ttrlab.sweep import ResultStore, run_sweep

    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    if what == "open":
        ResultStore(db).close()
    else:
        summary = run_sweep(what, db, workers=1, progress=False)
        print(summary["ran"], summary["finished"], summary["failed"], summary["stored_elsewhere"])
''')


def _together(tmp_path: Path, what: str, db, n: int) -> list[str]:
    """Start n TOGETHER processes, release them at once; their stdout, after asserting that
    every one exited 0 (else the error lines of each)."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", TOGETHER, str(flag), str(go), what, str(db)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for flag in ready]
    deadline = time.monotonic() + 60
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    outs = [proc.communicate(timeout=120) for proc in procs]
    errors = [[line for line in err.splitlines() if "Error" in line][-1:] for _, err in outs]
    assert [proc.returncode for proc in procs] == [0] * n, errors
    return [out for out, _ in outs]


def test_simultaneous_first_opens_create_the_schema_once(tmp_path, store_db):
    """Three processes open the same fresh database at the same moment: all succeed."""
    _together(tmp_path, "open", store_db, 3)
    from ttrlab.sweep import ResultStore

    with ResultStore(store_db) as store:
        assert store.counts() == {}
    check_integrity(store_db)


def counting_spec(path: Path, xs, seconds: float, seeds=(0, 1), name="shared") -> Path:
    path.write_text(yaml.safe_dump({"name": name, "kind": "counting", "seeds": list(seeds),
                                    "base": {"seconds": seconds}, "axes": {"x": list(xs)}}))
    return path


def test_two_drivers_compute_a_40_run_sweep_exactly_once(tmp_path, monkeypatch, store_db):
    """Two sweep drivers on one spec and one database, released at the same moment (two machines
    sharing a results database): both finish, every run is stored once, whole, computed once,
    and both drivers did part of the work."""
    log = install_counting_kind(tmp_path, monkeypatch)
    from counting_kind import computations
    from ttrlab.sweep import ResultStore

    spec = counting_spec(tmp_path / "s.yaml", range(20), seconds=0.05)
    with ResultStore(store_db):  # the schema exists: the race of creating it is the test above
        pass
    outs = [list(map(int, out.split())) for out in _together(tmp_path, str(spec), store_db, 2)]
    assert all(failed == 0 for _, _, failed, _ in outs), outs
    assert sum(ran for ran, _, _, _ in outs) == 40 and all(ran > 0 for ran, _, _, _ in outs), outs
    final = rows(store_db)
    assert len(final) == 40 and len({r[0] for r in final}) == 40 and all(r[1] == "finished" for r in final)
    assert sorted(r[2]["metrics"]["value"] for r in final) == sorted(x * 10 + s for x in range(20) for s in (0, 1))
    check_integrity(store_db)
    assert query(store_db, "SELECT count(*) FROM sweeps") == [(1,)]
    assert query(store_db, "SELECT count(*) FROM claims") == [(0,)]  # every claim went with its run
    counts = computations(log)
    assert set(counts) == {r[0] for r in final}
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}


DRIVER = textwrap.dedent('''
    import json, sys
    from ttrlab.sweep import run_sweep

    spec, db, lease = sys.argv[1:4]
    summary = run_sweep(spec, db, workers=1, progress=False, lease=float(lease))
    print(json.dumps({k: summary[k] for k in ("ran", "finished", "failed", "stored_elsewhere", "taken_over")}))
''')


def _log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_killed_drivers_run_is_taken_over_once_after_its_lease(tmp_path, monkeypatch, store_db):
    """Driver A is SIGKILLed (with its worker) in the middle of a run it claimed; its claim
    stays, its lease still alive. Driver B on the same host computes everything else and takes
    the orphaned run over at once (A's pid no longer runs here; a driver on another host waits
    for the lease, see the takeover test below) and computes it once. Every run ends stored
    once and computed once, and no claim is left."""
    log = install_counting_kind(tmp_path, monkeypatch)
    from counting_kind import computations
    from ttrlab.sweep import ResultStore

    lease = 60.0
    spec = counting_spec(tmp_path / "s.yaml", range(4), seconds=1.5, seeds=(0,))
    a = subprocess.Popen([sys.executable, "-c", DRIVER, str(spec), str(store_db), str(lease)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    started = Path(f"{log}.started")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (len(_log_lines(log)) >= 1 and len(_log_lines(started)) >= 2):
        time.sleep(0.05)
    assert len(_log_lines(started)) >= 2, a.communicate(timeout=5)
    time.sleep(0.3)  # A's worker is inside its second run (1.5 s long)
    os.killpg(a.pid, signal.SIGKILL)  # the driver and its worker at once: the run in flight never finishes
    a.wait(timeout=10)
    done_by_a = len(_log_lines(log))
    with ResultStore(store_db, create=False) as store:
        orphaned = store.claims()
    assert len(orphaned) == 1 and orphaned[0]["pid"] == a.pid and not orphaned[0]["expired"]

    b = subprocess.Popen([sys.executable, "-c", DRIVER, str(spec), str(store_db), str(lease)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = b.communicate(timeout=180)
    assert b.returncode == 0, err[-2000:]
    summary = __import__("json").loads(out.strip().splitlines()[-1])
    assert summary["taken_over"] == 1 and summary["failed"] == 0
    assert summary["ran"] == 4 - done_by_a
    final = rows(store_db)
    assert len(final) == 4 and all(r[1] == "finished" for r in final)
    check_integrity(store_db)
    counts = computations(log)
    assert set(counts) == {r[0] for r in final} and all(n == 1 for n in counts.values()), counts
    assert query(store_db, "SELECT count(*) FROM claims") == [(0,)]


def test_status_shows_finished_running_stalled_and_pending(tmp_path, monkeypatch, store_db, capsys):
    """`ttrlab status` from what drivers left in the database: per sweep and per spec, the
    running runs with host, pid and age, a run whose lease expired as stalled; it writes nothing."""
    install_counting_kind(tmp_path, monkeypatch)
    import json

    from ttrlab.cli import main
    from ttrlab.sweep import ResultStore, load_spec
    from ttrlab.sweep.store import Owner

    spec_path = counting_spec(tmp_path / "s.yaml", range(3), seconds=0.0, name="status-demo")
    spec = load_spec(spec_path)
    runs = spec.expand().runs  # 6 runs
    alive, gone = Owner(host="node-a", pid=111), Owner(host="node-b", pid=222)
    with ResultStore(store_db) as store:
        sweep_id = store.register_sweep(spec.name, spec.sha256, planned_runs=len(runs))
        store.record(sweep_id=sweep_id, kind="counting", run_key=runs[0].run_key, config=runs[0].config_dict,
                     result={"metrics": {"value": 1.0}})
        store.record(sweep_id=sweep_id, kind="counting", run_key=runs[1].run_key, config=runs[1].config_dict,
                     error="RuntimeError: boom")
        assert store.claim("counting", [(runs[2].run_key, "counting x=1 seed 0")], alive, sweep_id=sweep_id)
        store.claim("counting", [(runs[3].run_key, "counting x=1 seed 1")], gone, sweep_id=sweep_id, lease=1.0)
    time.sleep(1.2)
    before = query(store_db, "SELECT count(*) FROM claims")

    assert main(["status", "--db", str(store_db)]) == 0
    text = capsys.readouterr().out
    assert "status-demo" in text and "on node-a pid 111" in text and "on node-b pid 222" in text
    assert "lease expired" in text and "1 stalled" in text
    for args in ([], ["--spec", str(spec_path)]):
        assert main(["status", "--db", str(store_db), "--json", *args]) == 0
        (status,) = json.loads(capsys.readouterr().out)
        counts = {k: status[k] for k in ("planned", "finished", "failed", "running", "stalled", "pending")}
        assert counts == {"planned": 6, "finished": 1, "failed": 1, "running": 1, "stalled": 1, "pending": 2}
        assert [c["host"] for c in status["claims"]] == ["node-a", "node-b"]  # slowest (claimed first) first
    assert query(store_db, "SELECT count(*) FROM claims") == before


def test_a_takeover_goes_to_exactly_one_of_many_drivers(store_db):
    """Eight drivers (threads, each its own owner and connection) take over the same expired
    claims at the same moment: each run goes to exactly one of them."""
    from ttrlab.sweep.store import BUSY, TAKEN_OVER, Owner, ResultStore

    keys = [(f"run{i}", f"run {i}") for i in range(10)]
    with ResultStore(store_db) as store:
        store.claim("k", keys, Owner(), lease=1.0)
    time.sleep(1.2)
    barrier = threading.Barrier(8)
    outcomes: list[dict] = []

    def driver():
        with ResultStore(store_db) as store:
            barrier.wait()
            outcomes.append(store.claim("k", keys, Owner(), lease=60.0))

    threads = [threading.Thread(target=driver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 8
    for key, _ in keys:
        got = [outcome[key] for outcome in outcomes]
        assert got.count(TAKEN_OVER) == 1 and got.count(BUSY) == 7, (key, got)


def test_recording_one_new_run_from_many_processes_at_once_keeps_the_first(store_db):
    """`record` of the same new run by several writers at once: no IntegrityError escapes, one
    row stays, and it is one of theirs, whole."""
    from ttrlab.sweep.store import ResultStore

    with ResultStore(store_db):
        pass
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def writer(i: int):
        try:
            with ResultStore(store_db) as store:
                barrier.wait()
                for n in range(5):
                    store.record(sweep_id=None, kind="k", run_key=f"key{n}", config={"n": n},
                                 result={"metrics": {"writer": float(i), "value": float("nan")}})
        except BaseException as error:  # noqa: BLE001 - the test reports whatever escaped
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    stored = rows(store_db)
    assert sorted(r[0] for r in stored) == [f"key{n}" for n in range(5)]
    assert all(r[1] == "finished" and r[2]["metrics"]["value"] is None for r in stored)  # NaN stored as null
    assert query(store_db, "SELECT count(*) FROM metrics") == [(5,)]  # 'writer' only: NaN is no metric
