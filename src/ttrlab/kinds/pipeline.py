"""One run, for every run kind, as a straight line of pure steps:

    validate → load data → attack → model → method.prepare → optimize → evaluate → RunResult

A run kind is an `Experiment`: it supplies the steps that differ between kinds (which data, how
the attack changes it, which model class, what a training batch and an evaluation are). The
order of the steps, the device and precision (`runtime.Runtime`), the method, the training loop
(`training.optimize`) and the result document (`result.RunResult`) are shared:

| kind         | experiment                                   | data → attack                    | evaluate                 |
|--------------|----------------------------------------------|----------------------------------|--------------------------|
| `train`      | `ttrlab.kinds.classification.experiment.ClassificationExperiment` | GLUE split → poisoned split      | clean/triggered metrics  |
| `generative` | `ttrlab.kinds.generative.experiment.GenerativeExperiment` | Alpaca + BackdoorLLM mixture | ASR, utility        |
| `theory`     | `ttrlab.kinds.theory.experiment.TheoryExperiment`  | N examples → poisoned twins      | NTK, M′, Fisher at θ₀ (no optimize step) |

`run` is a pure function of the config (seed included): every random draw comes from a named
stream of the seed (`ttrlab.core.streams`), whichever process, executor or device runs it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ttrlab.core.result import RunResult, versions
from ttrlab.models.runtime import Runtime


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    sections: dict[str, Any] = field(default_factory=dict)  # kind-specific sections of the result


class Experiment:
    """The steps a run kind supplies. `name` is the run kind; `config_type` its RunSettings
    subclass. Every step is given the validated config and what earlier steps returned."""

    name: ClassVar[str]
    config_type: ClassVar[type]

    # ---- a run kind for sweeps (`ttrlab.kinds.registry.RUN_KINDS`) ---------------------------
    def config_from_dict(self, values: dict[str, Any]):
        return self.config_type.load(values)

    def run_key(self, config) -> str:
        return config.run_key()

    def run(self, config, progress=None) -> dict[str, Any]:
        return run(self, config, progress=progress).to_dict()

    def fusion_key(self, config) -> str | None:
        """Runs with the same non-None key may train together in one process over one shared
        base model (`run_group`); None: this run trains alone. A run's result never depends
        on the group it trained in."""
        return None

    def run_group(self, configs: list, progress=None) -> list[dict[str, Any]]:
        """The result documents of `configs` (same fusion key), in order. Raises if the group
        fails (then every run of it failed). The default trains them one after another."""
        return [self.run(config, progress=progress) for config in configs]

    # ---- the steps ------------------------------------------------------------------------
    def compute_without_model(self, config) -> RunResult:
        raise NotImplementedError

    def load_data(self, config) -> Any:
        raise NotImplementedError

    def poison(self, config, data) -> Any:
        raise NotImplementedError

    def load_model(self, config, data) -> tuple[Any, Any]:
        """(tokenizer, model) on the CPU, freshly initialised where the run's seed says."""
        raise NotImplementedError

    def training_set(self, config, data, poisoned, tokenizer):
        """The `training.TrainingSet` the loop consumes (kinds that train)."""
        raise NotImplementedError

    def evaluate(self, config, prepared, tokenizer, data, poisoned, runtime: Runtime) -> Evaluation:
        raise NotImplementedError

    def checkpoints(self, config, tokenizer, data, poisoned, runtime: Runtime):
        """The `curves.Checkpoints` that record this run's learning curve (None: no curve)."""
        return None

    def data_summary(self, config, data, poisoned) -> dict[str, Any]:
        """The result's "data" section."""
        raise NotImplementedError

    def poison_summary(self, config, poisoned) -> dict[str, Any]:
        """The result's "poison" section."""
        raise NotImplementedError


def run(experiment: Experiment, config, *, progress=None, batch_hook=None, keep_model: bool = False,
        data=None) -> RunResult:
    """Run one config of `experiment`. `data` is `experiment.load_data(config)` when the caller
    loaded it already (to report data errors before any progress output); `batch_hook(positions,
    batch)` sees every batch the model trains on; with `keep_model` the result holds the trained
    model and tokenizer."""
    from ttrlab.methods import METHODS
    from ttrlab.training.loop import optimize

    config.validate()
    if not config.needs_model():
        return experiment.compute_without_model(config)
    runtime = Runtime.resolve(config.device, config.precision)
    data = data if data is not None else experiment.load_data(config)
    poisoned = experiment.poison(config, data)

    _notify(progress, "load", model=config.model)
    tokenizer, model = experiment.load_model(config, data)
    config.check_model_fit(getattr(model, "config", None))  # a hub model now known: rank, max_length
    prepared = METHODS.get(config.method).prepare(model.to(runtime.device), config)
    _notify(progress, "prepared", trainable_bytes=sum(p.numel() * p.element_size()
                                                      for p in prepared.model.parameters() if p.requires_grad))

    stats = None
    if config.TRAINS:
        training = experiment.training_set(config, data, poisoned, tokenizer)
        # a run of 0 steps has no learning curve (its one point would be the start's evaluation)
        checkpoints = experiment.checkpoints(config, tokenizer, data, poisoned, runtime) if config.max_steps else None
        stats = optimize(prepared.model, training, config, config.seed, runtime, progress, batch_hook, checkpoints,
                         prepared.after_step)

    _notify(progress, "evaluate")
    return evaluate_and_record(experiment, config, runtime, data, poisoned, tokenizer, prepared,
                               stats.as_dict() if stats is not None else None, keep_model)


def evaluate_and_record(experiment: Experiment, config, runtime: Runtime, data, poisoned, tokenizer, prepared,
                        train: dict[str, Any] | None, keep_model: bool = False) -> RunResult:
    """The last step of every run (alone or in a fused group): evaluate the trained model and
    write the result document; `train` is the training record (None for kinds that do not train)."""
    started = time.perf_counter()
    evaluation = experiment.evaluate(config, prepared, tokenizer, data, poisoned, runtime)
    eval_seconds = time.perf_counter() - started
    return RunResult(
        kind=experiment.name,
        run_key=config.run_key(),
        config=config.resolved(),
        versions=versions(),
        runtime=runtime.record(),
        data=experiment.data_summary(config, data, poisoned),
        poison=experiment.poison_summary(config, poisoned),
        method=prepared.record(config.method),
        metrics=evaluation.metrics,
        train={**train, "eval_seconds": round(eval_seconds, 3)} if train is not None else None,
        sections=evaluation.sections,
        model=prepared.model if keep_model else None,
        tokenizer=tokenizer if keep_model else None,
    )


def run_document(experiment: Experiment, config, **options: Any) -> dict[str, Any]:
    """`run` as a JSON-able result document; with `keep_model=True` the trained model and its
    tokenizer come back under "_model" and "_tokenizer" (not JSON)."""
    result = run(experiment, config, **options)
    document = result.to_dict()
    if options.get("keep_model"):
        document["_model"], document["_tokenizer"] = result.model, result.tokenizer
    return document


def _notify(progress, event: str, **info: Any) -> None:
    if progress is not None:
        progress(event, **info)
