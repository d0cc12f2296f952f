"""One run, for every run kind, as a straight line of pure steps:

    validate → load data → attack → model → method.prepare → optimize → evaluate → RunResult
    `--------- start ---------'   `------------- train ------------'   `---- finish ----'

A run kind is an `Experiment`: it supplies the steps that differ between kinds (which data, how
the attack changes it, which model class, what a training batch and an evaluation are). The
order of the steps, the device and precision (`runtime.Runtime`), the method, the training loop
(`training.optimize`) and the result document (`result.RunResult`) are shared:

| kind         | experiment                                   | data → attack                    | evaluate                 |
|--------------|----------------------------------------------|----------------------------------|--------------------------|
| `train`      | `ttrlab.kinds.classification.experiment.ClassificationExperiment` | GLUE split → poisoned split      | clean/triggered metrics  |
| `generative` | `ttrlab.kinds.generative.experiment.GenerativeExperiment` | Alpaca + BackdoorLLM mixture | ASR, utility        |
| `theory`     | `ttrlab.kinds.theory.experiment.TheoryExperiment`  | N examples → poisoned twins      | NTK, M′, Fisher at θ₀ (no optimize step) |

What the steps have made so far travels in one object, the run's `RunState` (config, runtime,
data, poisoned data, tokenizer, prepared model, training record), and every step after the
attack reads from it by name. `start`, `train` and `finish` are the only way a run's state is
made, its model trained and its result written: `run` calls them in a line, a defense
(`ttrlab.defenses.victim.Victim`) retrains a fresh model through `train`, and a fused group
(`ttrlab.kinds.fused`) uses `start` and `finish` around its shared-base training.

`run` is a pure function of the config (seed included): every random draw comes from a named
stream of the seed (`ttrlab.core.streams`), whichever process, executor or device runs it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ttrlab.core.result import RunResult, versions
from ttrlab.models.runtime import Runtime
from ttrlab.training.fit import learned


@dataclass
class RunState:
    """One run as it goes through the steps: what the steps before have made, by name."""

    config: Any  # the validated config of the run's kind (a `RunSettings`)
    runtime: Runtime  # the device and precision, resolved once per run
    data: Any  # `Experiment.load_data`: the run's task data (training subset, test sets)
    poisoned: Any  # `Experiment.poison`: the attacked training data and the triggered test sets
    tokenizer: Any = None  # set by `train` (with the model)
    prepared: Any = None  # `methods.PreparedModel` after `train`: the method's model, trained in place
    train: dict[str, Any] | None = None  # the training record (`TrainStats.as_dict`); None: not trained

    @property
    def model(self):
        return self.prepared.model

    def fresh(self) -> RunState:
        """The same run before its model: what a retrain starts from (data and attack kept)."""
        return replace(self, tokenizer=None, prepared=None, train=None)


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    sections: dict[str, Any] = field(default_factory=dict)  # kind-specific sections of the result


class Experiment:
    """The steps a run kind supplies. `name` is the run kind; `config_type` its RunSettings
    subclass. `load_data` and `poison` make the run's data; every later step is given the run's
    `RunState`."""

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

    def load_model(self, state: RunState) -> tuple[Any, Any]:
        """(tokenizer, model) on the CPU, freshly initialised where the run's seed says."""
        raise NotImplementedError

    def training_set(self, state: RunState, examples=None):
        """The `training.TrainingSet` the loop consumes (kinds that train): of `examples`, or of
        the run's own (poisoned) training examples when None."""
        raise NotImplementedError

    def evaluate(self, state: RunState) -> Evaluation:
        raise NotImplementedError

    def checkpoints(self, state: RunState):
        """The `curves.Checkpoints` that record this run's learning curve (None: no curve)."""
        return None

    def classes(self, state: RunState) -> int | None:
        """How many classes the model predicts, for the training-fit rule (`training.fit`);
        None: the kind is not a classifier (no rule)."""
        return None

    def data_summary(self, state: RunState) -> dict[str, Any]:
        """The result's "data" section."""
        raise NotImplementedError

    def poison_summary(self, state: RunState) -> dict[str, Any]:
        """The result's "poison" section."""
        raise NotImplementedError


def run(experiment: Experiment, config, *, progress=None, batch_hook=None, keep_model: bool = False,
        data=None) -> RunResult:
    """Run one config of `experiment`. `data` is `experiment.load_data(config)` when the caller
    loaded it already (to report data errors before any progress output); `batch_hook(positions,
    batch)` sees every batch the model trains on; with `keep_model` the result holds the trained
    model and tokenizer."""
    config.validate()
    if not config.needs_model():
        return experiment.compute_without_model(config)
    state = start(experiment, config, data)
    train(experiment, state, progress=progress, batch_hook=batch_hook)
    _notify(progress, "evaluate")
    return finish(experiment, state, keep_model)


def start(experiment: Experiment, config, data=None) -> RunState:
    """A validated config's state before its model: the device and precision resolved (a
    missing GPU fails here, before any data is read), the data loaded (unless given) and attacked."""
    runtime = Runtime.resolve(config.device, config.precision)
    data = data if data is not None else experiment.load_data(config)
    return RunState(config, runtime, data, experiment.poison(config, data))


def load_model(experiment: Experiment, state: RunState):
    """The run's freshly initialised model (on the CPU), checked against the config now that a
    hub model is known (rank, max_length); the tokenizer goes into `state`."""
    tokenizer, model = experiment.load_model(state)
    state.config.check_model_fit(getattr(model, "config", None))
    state.tokenizer = tokenizer
    return model


def train(experiment: Experiment, state: RunState, examples=None, *, progress=None, batch_hook=None) -> RunState:
    """load model → method.prepare → optimize, into `state` (its tokenizer, prepared model and
    training record). `examples`: train on these instead of the run's own training examples (a
    defense's retrain; then no learning curve is recorded). Kinds that do not train stop after
    prepare."""
    from ttrlab.methods import METHODS
    from ttrlab.training.loop import optimize

    config, runtime = state.config, state.runtime
    _notify(progress, "load", model=config.model)
    model = load_model(experiment, state)
    prepared = state.prepared = METHODS.get(config.method).prepare(model.to(runtime.device), config)
    _notify(progress, "prepared", trainable_bytes=sum(p.numel() * p.element_size()
                                                      for p in prepared.model.parameters() if p.requires_grad))
    if config.TRAINS:
        training = experiment.training_set(state, examples)
        # a run of 0 steps has no learning curve (its one point would be the start's evaluation)
        checkpoints = experiment.checkpoints(state) if config.max_steps and examples is None else None
        stats = optimize(prepared.model, training, config, config.seed, runtime, progress, batch_hook, checkpoints,
                         prepared.after_step)
        state.train = stats.as_dict()
    return state


def finish(experiment: Experiment, state: RunState, keep_model: bool = False) -> RunResult:
    """The last step of every run (alone or in a fused group): evaluate the trained model and
    write the result document. A classifier's training record says whether it learned its task
    (`train.learned`, `training.fit`): False means its metrics test nothing."""
    started = time.perf_counter()
    evaluation = experiment.evaluate(state)
    eval_seconds = time.perf_counter() - started
    train = None
    if state.train is not None:
        train = {**state.train, "eval_seconds": round(eval_seconds, 3)}
        judged = learned(train.get("final_loss"), experiment.classes(state))
        if judged is not None:  # a classifier that trained: did it fit better than a constant predictor?
            train["learned"] = judged
    return RunResult(
        kind=experiment.name,
        run_key=state.config.run_key(),
        config=state.config.resolved(),
        versions=versions(),
        runtime=state.runtime.record(),
        data=experiment.data_summary(state),
        poison=experiment.poison_summary(state),
        method=state.prepared.record(state.config.method),
        metrics=evaluation.metrics,
        train=train,
        sections=evaluation.sections,
        model=state.prepared.model if keep_model else None,
        tokenizer=state.tokenizer if keep_model else None,
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
