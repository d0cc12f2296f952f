"""A test-only run kind, "planted", whose result is a known effect plus seeded noise: the
seeds-until-decided loop's tests run real sweeps of it in milliseconds.

Config keys: arm ("treatment" | "control"), effect (the treatment's true effect on `score`),
noise (the sd of each run's draw), salt (picks another stream of draws), seed. `score` = effect
(treatment only) + a normal draw of sd `noise` from a generator seeded by (seed, arm, salt): a run
is a pure function of its config.
"""
import hashlib
import json

import numpy as np

from ttrlab.core.errors import UserError, did_you_mean
from ttrlab.kinds.registry import RUN_KINDS

DEFAULTS = {"arm": "control", "effect": 0.0, "noise": 1.0, "salt": 0, "seed": 0}


class Config(dict):
    def to_dict(self):
        return dict(self)


class Planted:
    def config_from_dict(self, values):
        for key in values:
            if key not in DEFAULTS:
                raise UserError(f"unknown config key {key!r}{did_you_mean(key, DEFAULTS)}")
        return Config({**DEFAULTS, **values})

    def run_key(self, config):
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:24]

    def run(self, config, progress=None):
        arm = 1 if config["arm"] == "treatment" else 0
        rng = np.random.default_rng([int(config["seed"]), arm, int(config["salt"])])
        score = (config["effect"] if arm else 0.0) + float(rng.normal(0, config["noise"]))
        return {"metrics": {"score": score}, "versions": {"planted": "1"}}


if "planted" not in RUN_KINDS:
    RUN_KINDS.register("planted")(Planted())
