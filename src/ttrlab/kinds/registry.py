"""Run kinds: what one point of a sweep runs.

A kind is an object with

- `config_from_dict(d) -> config`: validate a mapping (raise `UserError` on a bad key or value);
  the config should have `to_dict()` (stored in the database) — else the mapping is stored;
- `run_key(config) -> str`: the run's identity (a hash of the resolved config, seed included);
- `run(config, progress=None) -> dict`: do the work; return a JSON-able result document with a
  "metrics" mapping (nested mappings are flattened to dotted names in the database, e.g.
  `clean.accuracy`; non-numeric and null values are left out of the metrics table but kept
  in the stored document). `progress(event, **info)` is optional, e.g. ("step", step=, total=).

Optionally (a kind without them always runs alone):

- `fusion_key(config) -> str | None`: runs of equal non-None key can be trained as one group;
- `run_group(configs, progress=None) -> list[dict]`: the result documents of such a group, in
  order (raising fails the whole group).

The built-in kinds are the pipeline's experiments (`ttrlab.kinds.pipeline`): "train" (classification),
"generative" and "theory", each an `ExperimentKind` that imports its experiment on first use.
Other packages add kinds by registering into RUN_KINDS from a module named in the environment
variable `TTRLAB_PLUGINS` (comma-separated module names, imported here — also inside sweep
workers, which inherit the environment).
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from ttrlab.core.errors import UserError, first_line, shown
from ttrlab.core.registry import Registry

RUN_KINDS: Registry[Any] = Registry("run kind")
PLUGINS_ENV = "TTRLAB_PLUGINS"


class ExperimentKind:
    """A run kind backed by a pipeline `Experiment`, imported on first use, and its config class,
    imported apart: reading, validating and keying a config (a spec's dry run) needs only the
    config, so a process that never runs the kind never imports torch or loads a model."""

    def __init__(self, module: str, attribute: str, config: str):
        self.module, self.attribute = module, attribute
        self.config = config  # "module:Class"
        self._experiment = None

    @property
    def experiment(self):
        if self._experiment is None:
            self._experiment = getattr(importlib.import_module(self.module), self.attribute)
        return self._experiment

    @property
    def config_type(self):
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module), name)

    def config_from_dict(self, values: dict[str, Any]):
        return self.config_type.load(values)

    def run_key(self, config) -> str:
        return config.run_key()

    def run(self, config, progress=None) -> dict[str, Any]:
        return self.experiment.run(config, progress=progress)

    def fusion_key(self, config) -> str | None:
        return self.experiment.fusion_key(config)

    def run_group(self, configs: list, progress=None) -> list[dict[str, Any]]:
        return self.experiment.run_group(configs, progress=progress)


for _name, _module, _attribute, _config in (
    ("train", "ttrlab.kinds.classification.experiment", "CLASSIFICATION", "ttrlab.kinds.classification.config:RunConfig"),
    ("generative", "ttrlab.kinds.generative.experiment", "GENERATIVE", "ttrlab.kinds.generative.config:GenConfig"),
    ("theory", "ttrlab.kinds.theory.experiment", "THEORY", "ttrlab.kinds.theory.config:TheoryConfig"),
):
    RUN_KINDS.register(_name)(ExperimentKind(_module, _attribute, _config))


def load_plugins() -> None:
    """Import every module TTRLAB_PLUGINS names. A module that is not installed, or fails to
    import, is a one-line UserError naming it (and what it lacks), not a traceback from every
    command."""
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            lacks = error.name or str(error)
            needs = "" if lacks in (module, module.split(".")[0]) else f" needs module {lacks!r}, which"
            raise UserError(f"{PLUGINS_ENV} names module {shown(module)}, which{needs} is not installed: pip install "
                            f"{shown(lacks)}, or remove it from {PLUGINS_ENV}") from None
        except Exception as error:  # a plugin's own bug: its first line, and how to get going again
            raise UserError(f"{PLUGINS_ENV} module {shown(module)} failed to import ({type(error).__name__}: "
                            f"{first_line(error)}); fix it, or remove it from {PLUGINS_ENV}") from None
        _loaded.add(module)


_loaded: set[str] = set()
load_plugins()
