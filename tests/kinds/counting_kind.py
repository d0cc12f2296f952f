"""A test-only run kind, "counting", that leaves one line per *finished computation* in a log
file, so a test can count how often each run was computed (not how many rows were stored).

Loaded through TTRLAB_PLUGINS like a user's kind (`conftest.install_counting_kind`), so it
reaches spawned workers, Ray workers on any node of this machine, and CLI subprocesses. The
log path comes from the environment (TTRLAB_TEST_COUNT_LOG), not the config, so it is not part
of a run's identity. Each line is written with one O_APPEND write (atomic for short lines), so
concurrent workers and drivers never interleave.

Each line is `run_key <TAB> pid <TAB> hostname <TAB> node`, node being $TTRLAB_TEST_NODE (a
label a test gives one Ray node's `ray start`, so its workers inherit it; "-" when unset). The
same line goes to `<log>.started` when a computation starts, so a test can tell a run killed
mid-way (started, never finished) from one never begun (`records`).

$TTRLAB_TEST_DB_GUARD (a folder, not holding the log), where set with the log, makes every
process that imports this kind refuse, and log to `<log>.guard`, any open of a path under that
folder and any sqlite3 connection: a test sets it for Ray nodes only (never the driver), to
show that results reach the database through the driver alone (`guard_violations`); each
result it computes then names the folder (`db_guard`).

Config keys: x, seed (identity); seconds (how long a run takes); payload (bytes of filler in the
result document, to fill a disk); rss_mb (memory the run holds while it sleeps, for memory caps).
"""
import hashlib
import json
import os
import platform
import sys
import time

from ttrlab.core.errors import UserError, did_you_mean
from ttrlab.kinds.registry import RUN_KINDS

LOG_ENV = "TTRLAB_TEST_COUNT_LOG"
NODE_ENV = "TTRLAB_TEST_NODE"
GUARD_ENV = "TTRLAB_TEST_DB_GUARD"
DEFAULTS = {"x": 0, "seed": 0, "seconds": 0.0, "payload": 0, "rss_mb": 0}


class Config(dict):
    def to_dict(self):
        return dict(self)


class Counting:
    def config_from_dict(self, values):
        for key in values:
            if key not in DEFAULTS:
                raise UserError(f"unknown config key {key!r}{did_you_mean(key, DEFAULTS)}")
        return Config({**DEFAULTS, **values})

    def run_key(self, config):
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:24]

    def _line(self, config) -> str:
        return f"{self.run_key(config)}\t{os.getpid()}\t{platform.node()}\t{os.environ.get(NODE_ENV) or '-'}\n"

    def run(self, config, progress=None):
        log = os.environ.get(LOG_ENV)
        if log:  # a start, in its own file: `computations` counts finished ones only
            _append(f"{log}.started", self._line(config))
        held = bytearray(int(config["rss_mb"]) * 2**20)
        for i in range(0, len(held), 4096):  # touch every page so it counts as resident
            held[i] = 1
        time.sleep(float(config["seconds"]))
        del held
        if log:
            _append(log, self._line(config))
        result = {"metrics": {"value": config["x"] * 10 + config["seed"]}, "pid": os.getpid(),
                  "payload": "x" * int(config["payload"]), "versions": {"counting": "1"}}
        if _guarded is not None:
            result["db_guard"] = _guarded  # the process that computed it could not touch this folder
        return result


def _append(path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _install_db_guard(folder: str, report: str) -> None:
    """From now on this process refuses (PermissionError) any open of a path under `folder` and
    any sqlite3 connection, and logs each attempt to `report`. An audit hook cannot be removed:
    for worker processes only."""
    guarded = os.path.realpath(folder) + os.sep

    def hook(event, args):
        if event == "sqlite3.connect":
            path = str(args[0]) if args else "?"
        elif event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if not os.path.realpath(path).startswith(guarded):
                return  # (the report itself lies outside `folder`: no recursion)
        else:
            return
        _append(report, f"{event}\t{path}\t{os.getpid()}\t{os.environ.get(NODE_ENV) or '-'}\n")
        raise PermissionError(f"{GUARD_ENV}: this process must not touch {path!r} ({event})")

    sys.addaudithook(hook)


_guarded = None  # the folder this process guards, if any
if os.environ.get(GUARD_ENV) and os.environ.get(LOG_ENV):  # the module is imported once per process
    _install_db_guard(os.environ[GUARD_ENV], f"{os.environ[LOG_ENV]}.guard")
    _guarded = os.environ[GUARD_ENV]

if "counting" not in RUN_KINDS:
    RUN_KINDS.register("counting")(Counting())


def computations(log_path) -> dict[str, int]:
    """{run_key: how many times it was computed} from a log this kind wrote."""
    counts: dict[str, int] = {}
    if os.path.exists(log_path):
        with open(log_path, encoding="utf-8") as log:
            for line in log:
                key = line.split("\t", 1)[0]
                counts[key] = counts.get(key, 0) + 1
    return counts


def records(log_path) -> list[dict[str, str]]:
    """Every computation in a log this kind wrote: {run_key, pid, host, node}, in log order
    (`records(f"{log}.started")`: every computation that started, finished or not)."""
    if not os.path.exists(log_path):
        return []
    with open(log_path, encoding="utf-8") as log:
        fields = [line.rstrip("\n").split("\t") for line in log if line.strip()]
    return [dict(zip(("run_key", "pid", "host", "node"), [*f, "-"][:4])) for f in fields]


def guard_violations(log_path) -> list[str]:
    """The lines `_install_db_guard` logged for the log at `log_path` (empty: no process touched the guarded folder)."""
    path = f"{log_path}.guard"
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as report:
        return [line.rstrip("\n") for line in report if line.strip()]
