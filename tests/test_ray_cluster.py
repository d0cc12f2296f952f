"""Ray across nodes: a real two-node Ray cluster on this machine (`ray start --head`, and a
second node joining it with `ray start --address`, each with one CPU and a resource of its
own), a `ttrlab sweep --executor ray --ray-address` driver, and the second node SIGKILLed
mid-sweep (its raylet, agents and workers at once, as when a machine drops off the network).

Each node is one `ray start --block` in a session of its own (Ray puts each worker in a process
group of its own, but they stay in the session), so killing one node or tearing the cluster
down kills one session's processes, never `ray stop` (which kills every Ray process of this user on
the machine, other people's included). The cluster has its own short --temp-dir, its own ports
and its own token (RAY_AUTH_TOKEN, so ~/.ray/auth_token is neither read nor written).

The runs are the "counting" kind (tests/kinds/counting_kind.py), whose log says which node
started and finished each computation. Skipped when ray is not installed.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import install_counting_kind

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]
STARTED = "Ray runtime started"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class Cluster:
    """Ray nodes on this machine, each a `ray start --block` session under one temp dir."""

    def __init__(self, env: dict[str, str]):
        # A short root: Ray's unix sockets live under it, and their paths may not pass ~107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="ttrlab-ray-", dir="/tmp"))
        self.env = env
        self.ip = ray.util.get_node_ip_address()
        self.port = _free_port()
        self.address = f"{self.ip}:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}  # the live ones
        self.sessions: set[int] = set()  # every node's session id (its `ray start` pid), live or killed

    def start(self, name: str, head: bool, node_env: dict[str, str]) -> None:
        """Start node `name`, with resource {name: 1} and $TTRLAB_TEST_NODE=name (`wait` for it)."""
        command = [*RAY_CLI, "start", "--block", "--num-cpus", "1", "--resources", f'{{"{name}": 1}}',
                   "--temp-dir", str(self.root), "--disable-usage-stats", "--object-store-memory", str(80 * 2**20),
                   "--include-log-monitor=false", "--min-worker-port", "0", "--max-worker-port", "0",
                   *(f"--{option}={_free_port()}" for option in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                                 "runtime-env-agent-port", "metrics-export-port"))]
        if head:
            command += ["--head", "--port", str(self.port), "--include-dashboard=false"]
        else:  # (it retries until the head's GCS answers)
            command += ["--address", self.address]
        with open(self.root / f"{name}.out", "wb") as out:
            self.nodes[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                                env={**self.env, **node_env, "TTRLAB_TEST_NODE": name})
        self.sessions.add(self.nodes[name].pid)

    def wait(self, name: str, timeout: float = 60) -> None:
        """Until `ray start` says node `name` runs; fail with its output if it stops or takes too long."""
        log, deadline = self.root / f"{name}.out", time.monotonic() + timeout
        while STARTED not in log.read_text(errors="replace"):
            if self.nodes[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ray node {name!r} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL node `name`: every process of its session (raylet, agents, and the workers,
        which Ray puts in process groups of their own) at once, as when its machine vanishes."""
        process = self.nodes.pop(name)
        for _ in range(50):  # again until none is left: one may have forked meanwhile
            members = [pid for pid, _ in _processes() if _session(pid) == process.pid]
            if not members:
                break
            for pid in members:
                _kill(pid)
            time.sleep(0.05)
        process.wait(timeout=10)

    def processes(self) -> list[str]:
        """This cluster's live processes: those of its nodes' sessions, or naming its temp dir."""
        return [f"{pid} {cmdline[:160]}" for pid, cmdline in _processes()
                if _session(pid) in self.sessions or str(self.root) in cmdline]

    def stop(self) -> None:
        """Kill every node, then any process of the cluster still there; fail if one stays."""
        for name in list(self.nodes):
            self.kill(name)
        deadline = time.monotonic() + 10
        while (left := self.processes()) and time.monotonic() < deadline:
            for line in left:
                _kill(int(line.split()[0]))
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
        assert not left, "Ray processes left after teardown:\n" + "\n".join(left)


def _processes() -> list[tuple[int, str]]:
    """(pid, command line) of every live (not zombie) process on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _session(int(entry.name)) is not None:
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found.append((int(entry.name), cmdline))
    return found


def _session(pid: int) -> int | None:
    """The session id of process `pid`; None if it is gone or a zombie."""
    try:
        state, _ppid, _pgrp, session = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[:4]
    except (OSError, ValueError):
        return None
    return None if state in ("Z", "X") else int(session)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def cluster_env(tmp_path, monkeypatch):
    """(env for the Ray nodes and the driver, the counting log, the database's folder)."""
    log = install_counting_kind(tmp_path, monkeypatch)
    db_dir = tmp_path / "driver"
    db_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    return env, log, db_dir


@pytest.mark.timeout(240)
def test_sweep_survives_losing_a_node(cluster_env):
    """A 12-run sweep (1 s a run) over two nodes; the second node is SIGKILLed once it has
    finished a run and is 0.4 s into its next one. The sweep must exit 0 with all 12 runs
    stored finished exactly once (one row each, attempts 1, none failed), by the driver alone.

    Needs Ray to retry a task lost with its node (`max_retries` > 0 in `run_ray`); with
    `max_retries=0` the cut-off run is stored as failed ("ray task failed: Task failed because
    the node it was running on is dead or unavailable", a NodeDiedError) and the sweep exits 1.

    What "computed exactly once" can honestly mean when a node dies: a computation cut off
    mid-way never finished, so it does not count, and its run must be computed to completion
    exactly once elsewhere. A computation that finished on the dead node may have lost its
    result with the node (it had not reached the driver yet); Ray then runs it again, so such
    a run may be computed twice — at most once on the dead node and once on the survivor. So:
    every run is computed to completion at least once, at most once per node, never twice on
    the surviving head, and its stored result is one of its completed computations (by pid).
    The test also checks that the kill did cut a computation off mid-way (started on the
    second node, never finished there) and that it was recomputed on the head.

    The driver alone writes the database: the nodes run with $TTRLAB_TEST_DB_GUARD on the
    database's folder, so any open there or any sqlite3 connection from a Ray worker is refused
    and logged (none may be), and each stored result says its worker was so guarded."""
    from counting_kind import guard_violations, records

    from ttrlab.sweep.spec import load_spec

    env, log, db_dir = cluster_env
    db = db_dir / "results.sqlite"
    spec = db_dir.parent / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "two-nodes", "kind": "counting", "seeds": [0, 1],
                                    "base": {"seconds": 1.0}, "axes": {"x": list(range(6))}}))
    started = Path(f"{log}.started")
    cluster = Cluster(env)
    driver = None
    try:
        node_env = {"TTRLAB_TEST_DB_GUARD": str(db_dir)}
        cluster.start("head", head=True, node_env=node_env)
        cluster.wait("head")
        # The second node joins while the driver starts (`ttrlab` takes ~10-20 s to import here).
        cluster.start("second", head=False, node_env=node_env)
        driver = subprocess.Popen(
            [sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(db), "--executor", "ray",
             "--ray-address", cluster.address, "--workers", "2", "--quiet"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        cluster.wait("second")
        # Kill the second node once it has finished a run and is half-way through its next one.
        deadline = time.monotonic() + 90
        while not (sum(r["node"] == "second" for r in records(log)) >= 1
                   and sum(r["node"] == "second" for r in records(started)) >= 2):
            assert driver.poll() is None, f"the sweep ended before the second node was killed:\n{driver.stdout.read()}"
            assert time.monotonic() < deadline, "the second node never finished a run"
            time.sleep(0.05)
        time.sleep(0.4)
        cluster.kill("second")
        out, _ = driver.communicate(timeout=90)
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        cluster.stop()

    assert driver.returncode == 0, out
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT run_key, status, attempts, error, result FROM runs").fetchall()
    planned = {run.run_key for run in load_spec(spec).expand().runs}
    assert len(planned) == 12
    assert sorted(row[0] for row in rows) == sorted(planned), "one row per planned run, no more"
    assert [row for row in rows if row[1] != "finished" or row[2] != 1] == [], out

    done, begun = records(log), records(started)
    per_node = Counter((r["run_key"], r["node"]) for r in done)
    assert {key for key, _ in per_node} == planned, "every run computed to completion at least once"
    assert max(per_node.values()) == 1, f"a run computed twice on one node: {per_node}"
    assert {node for _, node in per_node} == {"head", "second"}, "both nodes computed runs"

    for key, _, _, _, result in rows:  # the stored result is one of the run's completed computations
        result = json.loads(result)
        assert any(r["run_key"] == key and r["pid"] == str(result["pid"]) for r in done), (key, result["pid"])
        assert result.get("db_guard") == str(db_dir), "computed by a worker with the database folder guarded"
    cut_off = {r["run_key"] for r in begun if r["node"] == "second"} - {r["run_key"] for r in done if r["node"] == "second"}
    assert cut_off, "the kill should land while the second node computes a run"
    assert all(per_node[(key, "head")] == 1 for key in cut_off), "a run cut off mid-way is recomputed once on the head"
    assert guard_violations(log) == [], "a Ray worker touched the database folder"
