"""One probe: every predictor of `advise.predictors` for one configuration, from one model load.

    configuration → TheoryConfig (n = probe size) → the theory kind's samples (same streams:
    `theory_sample`, `theory_pairs`, `theory_fisher`) → classifier → method.prepare (θ₀, dropout off)
    → the theory kind's quantities (`kinds.theory.experiment.evaluate_theory`)
    → k full-batch AdamW steps on the probe poisoned at the rate → update norm, poisoned-twin loss

The k steps are the cheap baselines' "a few steps of training": full batch (no batch order to
draw), constant learning rate (the run's own, from its preset: a warm-up of 6% of 200 steps would
leave k = 5 steps at a near-zero rate), gradient clipping as in training, dropout off. So a probe
is a pure function of the configuration, its seed, n and k.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

from ttrlab.core.errors import UserError

PROBE_VERSION = 1  # bump when what a probe computes changes: stored probes of another version are not reused


@dataclass(frozen=True)
class ProbeSettings:
    n: int = 16  # probe examples (clean, their poisoned twins, and the sample poisoned at the rate)
    steps: int = 3  # k: full-batch steps of the baselines
    seed: int = 0

    def check(self) -> None:
        if self.n < 2:
            raise UserError(f"probe size {self.n} must be >= 2")
        if self.steps < 1:
            raise UserError(f"probe steps {self.steps} must be >= 1")


def theory_config(values: dict[str, Any], settings: ProbeSettings):
    """The theory kind's config of a training configuration (its own keys only; seed and n the probe's)."""
    from ttrlab.kinds.theory.config import TheoryConfig

    known = {f.name for f in fields(TheoryConfig)}
    kept = {k: v for k, v in values.items() if k in known}
    kept.update(seed=settings.seed, n=settings.n, quantity="all", device="cpu", precision="fp32")
    return TheoryConfig.load(kept)


def probe_key(values: dict[str, Any], settings: ProbeSettings) -> str:
    """What a probe's result depends on: the θ₀ identity (theory run key), the learning rate of
    the k steps, k and the probe version."""
    config = theory_config(values, settings)
    return f"v{PROBE_VERSION}-{config.run_key()}-lr{config.learning_rate():g}-k{settings.steps}"


class DataCache:
    """Loaded task data by what selects it, so probing many configurations reads each task once."""

    def __init__(self):
        self._data: dict[tuple, Any] = {}

    def get(self, config):
        from ttrlab.kinds.classification.experiment import load_run_data

        key = (config.task, config.data_dir, config.data_source, config.train_size, config.eval_size, config.seed)
        if key not in self._data:
            self._data[key] = load_run_data(config)
        return self._data[key]


def probe(values: dict[str, Any], settings: ProbeSettings, data: DataCache | None = None, *, runtime) -> dict[str, Any]:
    """The probe record of one configuration (flat config keys, as a spec point or a stored run
    holds them): theory metrics, baseline values, seconds. `runtime`: where it computes (the
    caller's choice, `models.runtime.Runtime`; the predictors are fp32 quantities)."""
    import torch

    from ttrlab.kinds.pipeline import RunState, load_model
    from ttrlab.kinds.theory.experiment import THEORY, draw_samples, evaluate_theory
    from ttrlab.methods import METHODS
    from ttrlab.training.loop import collate

    settings.check()
    config = theory_config(values, settings)
    data = (data or DataCache()).get(config)
    started = time.perf_counter()
    samples = draw_samples(config, data.train)
    state = RunState(config, runtime, data, samples)
    model = load_model(THEORY, state)  # checked against the config; the tokenizer goes into state
    tokenizer = state.tokenizer
    state.prepared = prepared = METHODS.get(config.method).prepare(model, config)
    theory = evaluate_theory(state).metrics
    theory_seconds = time.perf_counter() - started

    model = prepared.model
    model.eval()  # dropout off: the k steps are deterministic
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    train_batch = collate(tokenizer, samples.fisher, config.max_length)
    twins = collate(tokenizer, samples.paired, config.max_length)

    def twin_loss() -> float:
        with torch.no_grad():
            return float(model(**twins).loss)

    loss_before = twin_loss()
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate(), weight_decay=config.weight_decay)
    step_started = time.perf_counter()
    for _ in range(settings.steps):
        model(**train_batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    step_seconds = (time.perf_counter() - step_started) / settings.steps
    with torch.no_grad():
        update_norm = float(torch.sqrt(sum(((p - s) ** 2).sum() for p, s in zip(params, start))))
    loss_after = twin_loss()
    return {
        "key": probe_key(values, settings),
        "config": {k: values.get(k) for k in ("task", "model", "method", "rank", "alpha", "init", "init_scale",
                                               "attack", "rate", "lr", "lr_preset")},
        "probe": {"n": settings.n, "steps": settings.steps, "seed": settings.seed, "version": PROBE_VERSION},
        "theory": theory,
        "baseline": {
            "trainable_parameters": prepared.trainable_parameters,
            "update_norm": update_norm,
            "poison_loss": loss_after,
            "poison_loss_drop": loss_before - loss_after,
        },
        "seconds": time.perf_counter() - started,  # model load, theory and k steps; data loading excluded
        "theory_seconds": theory_seconds,
        "step_seconds": step_seconds,  # one full-batch step of n examples: extrapolates a training run
    }
