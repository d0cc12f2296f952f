"""The training loop (one readable function) and the batching beside it; its settings are
`training.settings`.

CPU time here goes mostly to padding, so batches are padded dynamically to their longest
member (never to max_length), and with `length_bucketing` examples of similar length are
grouped into the same batch (as Hugging Face's `group_by_length`): each epoch shuffles, cuts
the shuffled order into mega-batches of 50 batches, sorts each mega-batch by length, and
shuffles the resulting batches. The order is a pure function of the seed.
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from ttrlab.training.curves import Checkpoints
from ttrlab.data.examples import Example
from ttrlab.core.errors import UserError
from ttrlab.models.runtime import Runtime
from ttrlab.training.settings import OptimSettings
from ttrlab.core.streams import rng_for

MEGABATCH_BATCHES = 50
ProgressFn = Callable[..., None]
BatchHook = Callable[[list[int], dict[str, torch.Tensor]], None]


# ---- batching -----------------------------------------------------------------------------------
def _segments(examples: list[Example]) -> tuple[list[str], list[str] | None]:
    first = [e.texts[0] for e in examples]
    second = [e.texts[1] for e in examples] if len(examples[0].texts) == 2 else None
    return first, second


def encode(tokenizer, examples: list[Example], max_length: int) -> list[dict[str, list[int]]]:
    """Tokenize once, unpadded. Pair tasks go to the tokenizer as pairs (its own [SEP])."""
    first, second = _segments(examples)
    encoded = tokenizer(first, second, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in encoded]
    return [{k: encoded[k][i] for k in keys} for i in range(len(examples))]


def pad_batch(tokenizer, features: list[dict[str, list[int]]], labels: list[int] | None = None) -> dict[str, torch.Tensor]:
    batch = dict(tokenizer.pad(features, padding="longest", return_tensors="pt"))
    if labels is not None:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


def collate(tokenizer, examples: list[Example], max_length: int) -> dict[str, torch.Tensor]:
    """A padded batch of `examples` with their labels: what the model consumes."""
    return pad_batch(tokenizer, encode(tokenizer, examples, max_length), [e.label for e in examples])


def batch_order(lengths: list[int], batch_size: int, rng: np.random.Generator, bucketing: bool) -> Iterator[list[int]]:
    """One epoch of batches (lists of example positions)."""
    order = rng.permutation(len(lengths))
    if not bucketing:
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size].tolist()
        return
    batches: list[list[int]] = []
    mega = batch_size * MEGABATCH_BATCHES
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega].tolist(), key=lambda i: -lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    for b in rng.permutation(len(batches)):
        yield batches[b]


def endless_batches(lengths: list[int], batch_size: int, rng: np.random.Generator, bucketing: bool) -> Iterator[list[int]]:
    """`batch_order` epoch after epoch, from one generator: the batches of `max_steps` steps."""
    while True:
        yield from batch_order(lengths, batch_size, rng, bucketing)


@dataclass
class TrainStats:
    steps: int
    seconds: float
    tokens: int  # real (non-pad) tokens consumed
    padded_tokens: int  # tokens including padding
    final_loss: float | None  # mean loss over the last min(50, steps) steps
    curve: list[dict[str, Any]] | None = None  # the learning curve (`ttrlab.training.curves`), if asked for
    curve_seconds: float = 0.0  # spent evaluating at checkpoints (not in `seconds`)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "tokens_per_second": round(self.tokens_per_second, 1),
            "real_tokens": self.tokens,
            "padded_tokens": self.padded_tokens,
            "final_loss": self.final_loss,
            **({"curve": self.curve, "curve_seconds": round(self.curve_seconds, 3)} if self.curve is not None else {}),
        }


@dataclass
class TrainingSet:
    """What the loop trains on: unpadded features (one per example; `input_ids` at least) and
    `make_batch(positions)`, the padded model inputs (labels included) of those positions."""

    features: list[dict[str, list[int]]]
    make_batch: Callable[[list[int]], dict[str, torch.Tensor]]


def classification_training_set(tokenizer, examples: list[Example], max_length: int) -> TrainingSet:
    """A sequence classifier's training set: tokenized once, padded per batch."""
    features = encode(tokenizer, examples, max_length)
    labels = [e.label for e in examples]
    return TrainingSet(features, lambda positions: pad_batch(tokenizer, [features[i] for i in positions],
                                                             [labels[i] for i in positions]))


def adamw(parameters: list[torch.nn.Parameter], settings: OptimSettings, runtime: Runtime) -> torch.optim.AdamW:
    """torch's AdamW, fused where the device has the kernel: the default per-tensor loop costs
    more than the model's own arithmetic in a full fine-tuning step on the CPU (201 of 368 ms for
    MiniLM at batch 8, one thread; fused: 30 ms). Same update rule; round-off may differ."""
    return torch.optim.AdamW(parameters, lr=settings.learning_rate(), weight_decay=settings.weight_decay,
                             fused=runtime.fused_optimizer or None)


def linear_schedule(optimizer: torch.optim.Optimizer, settings: OptimSettings):
    """Linear warm-up over `warmup_ratio` of the steps, then linear decay to 0 at `max_steps`."""
    steps = settings.max_steps
    return get_linear_schedule_with_warmup(optimizer, math.ceil(settings.warmup_ratio * steps), max(steps, 1))


def apply_update(parameters: list[torch.nn.Parameter], optimizer, scheduler, scaler, max_grad_norm: float,
                 after_step: Callable[[], None] | None = None) -> None:
    """One optimizer step after the backward pass: unscale the gradients (fp16's `scaler`,
    None otherwise), clip them, step AdamW (skipped by the scaler on inf/nan) and the schedule,
    call `after_step` (the method's hook, `PreparedModel.after_step`: it may read the gradients),
    clear the gradients."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    scheduler.step()
    if after_step is not None:
        after_step()
    optimizer.zero_grad(set_to_none=True)


def optimize(
    model: torch.nn.Module,
    training: TrainingSet,
    settings: OptimSettings,
    seed: int,
    runtime: Runtime,
    progress: ProgressFn | None = None,
    batch_hook: BatchHook | None = None,
    checkpoints: Checkpoints | None = None,
    after_step: Callable[[int], None] | None = None,
) -> TrainStats:
    """The loop every run kind shares: AdamW with linear warm-up and decay, gradient clipping,
    `settings.max_steps` optimizer steps over as many epochs as needed, on `runtime`'s device and
    in its precision (fp32: no autocast, no scaler; the caller resolves it, there is no default). `batch_hook(positions, batch)` sees every
    batch the model consumes (positions index `training.features`); `checkpoints` records the
    learning curve (`ttrlab.training.curves`) and, where it has a store, saves the loop's state at each
    checkpoint and resumes from the last saved one. `after_step(step)` is the method's hook
    (`PreparedModel.after_step`), called after each optimizer step with its 0-based index."""
    lengths = [len(f["input_ids"]) for f in training.features]
    rng = rng_for(seed, "batch_order")
    torch.manual_seed(seed)  # dropout masks

    parameters = [p for p in model.parameters() if p.requires_grad]
    max_steps = settings.max_steps
    runtime.prepare_for_training()
    optimizer = adamw(parameters, settings, runtime)
    scheduler = linear_schedule(optimizer, settings)
    scaler = runtime.grad_scaler()
    model.train()
    recent_losses: list[float] = []
    step = tokens = padded = 0
    started = time.perf_counter()
    batches = endless_batches(lengths, settings.batch_size, rng, settings.length_bucketing)
    saved = checkpoints.saved_state() if checkpoints is not None else None
    if saved is not None:  # resume where a killed run of this config last saved its state
        step, tokens, padded, recent_losses = _restore_loop(saved, model, optimizer, scheduler, scaler)
        for _ in range(step):  # the batch order is a function of the seed: replay it to the step
            next(batches)
    elif checkpoints is not None:
        checkpoints.record(0, model)
    while step < max_steps:
        positions = next(batches)
        batch = training.make_batch(positions)
        if batch_hook is not None:
            batch_hook(positions, batch)
        with runtime.autocast():
            loss = model(**runtime.to_device(batch)).loss
        (loss if scaler is None else scaler.scale(loss)).backward()
        apply_update(parameters, optimizer, scheduler, scaler, settings.max_grad_norm,
                     None if after_step is None else functools.partial(after_step, step))
        step += 1
        tokens += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
        recent_losses = (recent_losses + [loss.item()])[-50:]
        if checkpoints is not None:
            checkpoints.observe(positions)
            if checkpoints.due(step, max_steps):
                checkpoints.record(step, model)
                if checkpoints.store is not None and step < max_steps:
                    checkpoints.save_state(_loop_state(step, tokens, padded, recent_losses, model, optimizer, scheduler, scaler))
        if progress is not None:
            progress("step", step=step, total=max_steps, loss=recent_losses[-1])
    model.eval()
    final_loss = round(float(np.mean(recent_losses)), 6) if recent_losses else None
    if checkpoints is None:
        return TrainStats(step, time.perf_counter() - started, tokens, padded, final_loss)
    checkpoints.discard_state()
    return TrainStats(step, time.perf_counter() - started - checkpoints.seconds, tokens, padded, final_loss,
                      checkpoints.points, checkpoints.seconds)


def _loop_state(step, tokens, padded, recent_losses, model, optimizer, scheduler, scaler) -> dict[str, Any]:
    """What the loop needs to go on from `step` exactly as if it had not stopped."""
    return {
        "step": step, "tokens": tokens, "padded": padded, "recent_losses": list(recent_losses),
        "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _restore_loop(state, model, optimizer, scheduler, scaler) -> tuple[int, int, int, list[float]]:
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(state["trainable"]) != set(trainable):
        raise UserError("the saved training state does not fit this run's trainable parameters; delete it to start over")
    with torch.no_grad():
        for name, parameter in trainable.items():
            parameter.copy_(state["trainable"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["cpu_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"], state["tokens"], state["padded"], list(state["recent_losses"])


@torch.inference_mode()
def predict(model: torch.nn.Module, tokenizer, examples: list[Example], max_length: int, batch_size: int,
            runtime: Runtime) -> np.ndarray:
    """Predicted class per example, on `runtime`'s device and in its precision. Batches are
    formed in length order (less padding) and the predictions put back in input order."""
    model.eval()
    features = encode(tokenizer, examples, max_length)
    by_length = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    predictions = np.empty(len(features), dtype=np.int64)
    for start in range(0, len(by_length), batch_size):
        positions = by_length[start : start + batch_size]
        with runtime.autocast():
            logits = model(**runtime.to_device(pad_batch(tokenizer, [features[i] for i in positions]))).logits
        predictions[positions] = logits.float().argmax(dim=-1).cpu().numpy()
    return predictions
