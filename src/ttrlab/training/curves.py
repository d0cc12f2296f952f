"""Learning curves: a run kind's evaluation at checkpoints during training (how fast a method
picks up a backdoor), stored in the result's `train.curve`.

`curve_every: k` evaluates before the first step, after every k-th and after the last, on a
small fixed evaluation set (`curve_size` examples or prompts, the first of the run's scored
ones). A point records the step, the training examples and poisoned examples seen so far, and
the kind's metrics (classification: clean accuracy and ASR; generative: ASR with and without
trigger and utility perplexity). A checkpoint evaluation does not change the run: the model
goes back to training mode and the random-number state is restored, so a run with a curve
trains exactly as one without (tested).

With `checkpoint_dir`, each checkpoint also saves the training loop's state (trainable weights,
AdamW, schedule, loss scaler, random state, the curve so far) to `<checkpoint_dir>/<run key>/`,
and a run of the same config started again (a killed sweep resumed) goes on from the last saved
checkpoint, with the same result as a run that never stopped (tested); the folder is removed when
the run finishes. The state is loaded with `torch.load(weights_only=True)`: no code runs.

`reached(curve, metric, threshold)` is the first point where a metric reached a value: with
`asr` and 0.5, "steps (or poisoned examples seen) until ASR >= 50%".
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


from ttrlab.core.errors import UserError


STATE_FILE = "state.pt"


class Checkpoints:
    """What the training loop calls: `observe(positions)` with every batch it trains on,
    `evaluate(model)` at each checkpoint (the model in eval mode); with a `store` folder,
    `save_state` / `saved_state` / `discard_state` keep the loop's state for a resume."""

    def __init__(self, config, poisoned_positions: set[int]):
        self.every = config.curve_every
        self.poisoned_positions = poisoned_positions
        self.examples_seen = 0
        self.poisoned_seen = 0
        self.points: list[dict[str, Any]] = []
        self.seconds = 0.0  # spent evaluating
        self.store = None
        if config.checkpoint_dir:
            from ttrlab.core.io import check_writable_dir

            try:
                self.store = check_writable_dir(config.checkpoint_dir) / config.run_key()
            except UserError as error:
                raise UserError(f"checkpoint_dir {config.checkpoint_dir!r}: {error}") from None

    def observe(self, positions: list[int]) -> None:
        self.examples_seen += len(positions)
        self.poisoned_seen += sum(p in self.poisoned_positions for p in positions)

    def due(self, step: int, max_steps: int) -> bool:
        return step == 0 or step == max_steps or step % self.every == 0

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        raise NotImplementedError

    def record(self, step: int, model: torch.nn.Module) -> None:
        """Evaluate at `step` without disturbing training (mode and random state restored)."""
        started = time.perf_counter()
        with _training_untouched(model):
            metrics = self.evaluate(model)
        self.seconds += time.perf_counter() - started
        self.points.append({"step": step, "examples_seen": self.examples_seen, "poisoned_seen": self.poisoned_seen, **metrics})

    # ---- resuming ----------------------------------------------------------------------------
    def save_state(self, loop_state: dict[str, Any]) -> None:
        """Write the loop's state and this curve's so far, atomically (a kill mid-write leaves the
        previous checkpoint)."""
        import torch
        self.store.mkdir(parents=True, exist_ok=True)
        state = {**loop_state, "curve": {"examples_seen": self.examples_seen, "poisoned_seen": self.poisoned_seen,
                                         "points": self.points, "seconds": self.seconds}}
        handle, temporary = tempfile.mkstemp(dir=self.store, suffix=".tmp")
        os.close(handle)
        torch.save(state, temporary)
        os.replace(temporary, self.store / STATE_FILE)

    def saved_state(self) -> dict[str, Any] | None:
        """The last saved state of this run (its curve restored here), or None."""
        import torch
        path = self.store / STATE_FILE if self.store is not None else None
        if path is None or not path.is_file():
            return None
        try:
            state = torch.load(path, weights_only=True)
        except Exception as error:  # a truncated or foreign file: say which, never guess
            raise UserError(f"cannot resume from {str(path)!r} ({str(error).splitlines()[0]}); delete it to start over") from None
        curve = state["curve"]
        self.examples_seen, self.poisoned_seen = curve["examples_seen"], curve["poisoned_seen"]
        self.points, self.seconds = list(curve["points"]), curve["seconds"]
        return state

    def discard_state(self) -> None:
        """The run finished: its saved state is no longer needed."""
        if self.store is not None and self.store.is_dir():
            shutil.rmtree(self.store)


@contextmanager
def _training_untouched(model: torch.nn.Module):
    import torch
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def reached(curve: list[dict[str, Any]], metric: str, threshold: float) -> dict[str, Any] | None:
    """The first curve point whose `metric` is >= `threshold` (None if none is)."""
    for point in curve:
        value = point.get(metric)
        if value is not None and value >= threshold:
            return point
    return None
