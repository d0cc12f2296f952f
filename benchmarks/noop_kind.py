"""A run kind, "noop", that computes nothing: what is left of a sweep is the store's and the
driver's own cost (`benchmarks/store_load.py`).

Loaded through TTRLAB_PLUGINS like a user's kind (`TTRLAB_PLUGINS=noop_kind`, with this folder on
sys.path / PYTHONPATH). Config keys: x, seed (the run's identity). Its result document is a
small one like a real run's: one metric, a versions mapping.

If $TTRLAB_NOOP_LOG names a file, each computation appends one line `run_key <TAB> pid` to it
with one O_APPEND write (atomic for short lines, so concurrent drivers never interleave):
`computations(log)` then says how often each run was computed, independent of what the
database stored.
"""
import hashlib
import json
import os

from ttrlab.core.errors import UserError, did_you_mean
from ttrlab.kinds.registry import RUN_KINDS

LOG_ENV = "TTRLAB_NOOP_LOG"
DEFAULTS = {"x": 0, "seed": 0}


class Config(dict):
    def to_dict(self):
        return dict(self)


class Noop:
    def config_from_dict(self, values):
        for key in values:
            if key not in DEFAULTS:
                raise UserError(f"unknown config key {key!r}{did_you_mean(key, DEFAULTS)}")
        return Config({**DEFAULTS, **values})

    def run_key(self, config):
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:24]

    def run(self, config, progress=None):
        log = os.environ.get(LOG_ENV)
        if log:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{self.run_key(config)}\t{os.getpid()}\n".encode())
            finally:
                os.close(fd)
        return {"metrics": {"value": config["x"] * 10 + config["seed"]}, "versions": {"noop": "1"}}


if "noop" not in RUN_KINDS:
    RUN_KINDS.register("noop")(Noop())


def computations(log_path) -> dict[str, int]:
    """{run_key: how many times it was computed} from a log this kind wrote."""
    counts: dict[str, int] = {}
    if os.path.exists(log_path):
        with open(log_path, encoding="utf-8") as log:
            for line in log:
                key = line.split("\t", 1)[0]
                counts[key] = counts.get(key, 0) + 1
    return counts
