"""A test-only run kind, "counting", that leaves one line per *finished computation* in a log
file, so a test can count how often each run was computed (not how many rows were stored).

Loaded through TTRLAB_PLUGINS like a user's kind (`conftest.install_counting_kind`), so it
reaches spawned workers, Ray workers on any node of this machine, and CLI subprocesses. The
log path comes from the environment (TTRLAB_TEST_COUNT_LOG), not the config, so it is not part
of a run's identity. Each line is written with one O_APPEND write (atomic for short lines), so
concurrent workers and drivers never interleave.

Config keys: x, seed (identity); seconds (how long a run takes); payload (bytes of filler in the
result document, to fill a disk); rss_mb (memory the run holds while it sleeps, for memory caps).
"""
import hashlib
import json
import os
import platform
import time

from ttrlab.errors import UserError, did_you_mean
from ttrlab.sweep.kinds import RUN_KINDS

LOG_ENV = "TTRLAB_TEST_COUNT_LOG"
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

    def run(self, config, progress=None):
        held = bytearray(int(config["rss_mb"]) * 2**20)
        for i in range(0, len(held), 4096):  # touch every page so it counts as resident
            held[i] = 1
        time.sleep(float(config["seconds"]))
        del held
        log = os.environ.get(LOG_ENV)
        if log:
            line = f"{self.run_key(config)}\t{os.getpid()}\t{platform.node()}\n".encode()
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return {"metrics": {"value": config["x"] * 10 + config["seed"]}, "pid": os.getpid(),
                "payload": "x" * int(config["payload"]), "versions": {"counting": "1"}}


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
