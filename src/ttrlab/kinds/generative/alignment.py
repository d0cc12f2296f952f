"""A safety-aligned starting point for the jailbreak task: an optional first stage that fine-tunes
the base model to refuse harmful prompts, so that there is a refusal for the backdoor to bypass.

Why: the jailbreak backdoor of the paper's Table 3 presupposes a model that refuses harmful
prompts without the trigger. SmolLM2-135M-Instruct answers 97.5% of BackdoorLLM's harmful test
prompts as it is (docs/generative.md), so a poisoned fine-tune of it has nothing to bypass.

The stage (`align_steps` > 0): full fine-tuning for `align_steps` steps, learning rate
`align_lr`, the run's batch size and maximum length, on
- `align_refusals` harmful prompts answered by a refusal: BackdoorLLM's `none_backdoor` safety
  responses of the jailbreak task (AdvBench training prompts, never the test prompts), only those
  the keyword detector calls refusals (370 of the 400; the other 30 comply);
- `align_clean` clean Alpaca records (not test instructions), so the model stays helpful.

It is a pure function of the base model and these settings (its draws and batch order come from
fixed streams, not the run's seed), so every run with the same settings starts from the same
aligned model. The aligned model is stored like a model, as safetensors weights plus a JSON record
under `$TTRLAB_CACHE_DIR/aligned/<key>/` (default `~/.cache/ttrlab`), written atomically under a
file lock (two workers needing it at once build it once), and reused by every later run, in any
process on that machine; loading it executes no code. The record holds the
refusal rate of the model before and after alignment on the jailbreak test prompts without
trigger (`CHECK_PROMPTS`: all 99; greedy, `CHECK_NEW_TOKENS`): what there is to bypass.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttrlab.core.errors import UserError
from ttrlab.core.io import build_lock
from ttrlab.core.settings import Section, require, setting

CACHE_ENV = "TTRLAB_CACHE_DIR"
CHECK_PROMPTS = 99  # jailbreak test prompts without trigger on which the refusal rate is measured
CHECK_NEW_TOKENS = 24  # enough for a refusal's opening ("I'm sorry, but I cannot ...")
ALIGNMENT_VERSION = 1  # bump when the stage's recipe changes, so stored models are rebuilt


@dataclass
class SafetyAlignment(Section):
    """The optional first stage: a safety-aligned starting point (jailbreak task)."""

    align_steps: int = setting(0, "first fine-tune the base model this many steps to refuse harmful prompts "
                                  "(jailbreak task; 0 = start from the model as it is)")
    align_refusals: int = setting(200, "harmful prompts with refusals in the alignment data (<= 370)")
    align_clean: int = setting(200, "clean Alpaca records mixed into the alignment data")
    align_lr: float = setting(5e-5, "learning rate of the alignment stage (full fine-tuning)")

    def check(self) -> None:
        from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

        require(self.align_steps >= 0, f"align_steps {self.align_steps} must be >= 0")
        if self.align_steps:
            require(GENERATIVE_TASKS.get(self.task).takes_safety_alignment,
                    f"align_steps {self.align_steps} needs task jailbreak (a refusal to bypass); task is {self.task!r}")
        require(1 <= self.align_refusals, f"align_refusals {self.align_refusals} must be >= 1")
        require(0 <= self.align_clean, f"align_clean {self.align_clean} must be >= 0")
        require(self.align_lr > 0, f"align_lr {self.align_lr} must be > 0")

    def identity(self, values: dict[str, Any]) -> None:
        if not self.align_steps:  # no stage: its knobs do not change the run
            for name in SafetyAlignment.field_names():
                values.pop(name, None)


def stage_settings(config, runtime) -> dict[str, Any]:
    """Everything the aligned model depends on: the stage's key."""
    return {"version": ALIGNMENT_VERSION, "model": config.model, "steps": config.align_steps,
            "refusals": config.align_refusals, "clean": config.align_clean, "lr": config.align_lr,
            "batch_size": config.batch_size, "max_length": config.max_length,
            "device": runtime.type, "precision": runtime.precision.name,
            "check_prompts": CHECK_PROMPTS, "check_new_tokens": CHECK_NEW_TOKENS}


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ttrlab").expanduser()


def aligned_model(config, tokenizer, model: torch.nn.Module, data_dir: Path, runtime) -> tuple[torch.nn.Module, dict[str, Any]]:
    """`model` with the aligned weights (built once, then loaded from the store) and the stage's record."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    settings = stage_settings(config, runtime)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / "aligned" / key
    with build_lock(folder):  # two workers that need the same stage: one builds, the other waits and loads
        if not (folder / "alignment.json").is_file():
            _build(config, tokenizer, copy.deepcopy(model), data_dir, runtime, settings, folder)
    try:
        record = json.loads((folder / "alignment.json").read_text(encoding="utf-8"))
        missing, unexpected = load_model(model, folder / "model.safetensors", strict=False)  # tied weights stored once
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise UserError(f"the stored aligned model in {str(folder)!r} cannot be read ({str(error).splitlines()[0]}); "
                        f"delete the folder to rebuild it") from None
    if missing or unexpected:
        raise UserError(f"the stored aligned model in {str(folder)!r} does not fit model {config.model!r}; delete the folder to rebuild it")
    return model, {**record, "key": key}


def alignment_examples(config, data_dir: Path):
    """The stage's training data: refusals of harmful training prompts and clean Alpaca records."""
    from ttrlab.kinds.generative.data import _example, clean_pool, read_records
    from ttrlab.kinds.generative.judge import KeywordJudge
    from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS
    from ttrlab.core.streams import fixed_rng

    jailbreak = GENERATIVE_TASKS.get("jailbreak")
    safety = read_records(jailbreak.twin_file("badnet", data_dir))  # the same file for every attack (SOURCE.md)
    refused = KeywordJudge().refusals([], [r["output"] for r in safety])
    refusals = [i for i, r in enumerate(refused) if r]
    if config.align_refusals > len(refusals):
        raise UserError(f"align_refusals {config.align_refusals} is more than the {len(refusals)} refusals in the safety data")
    chosen = sorted(fixed_rng("alignment_refusals").choice(len(refusals), size=config.align_refusals, replace=False).tolist())
    examples = [_example(safety[refusals[k]], "safety", refusals[k]) for k in chosen]
    alpaca, pool = clean_pool(jailbreak, data_dir)
    if config.align_clean > len(pool):
        raise UserError(f"align_clean {config.align_clean} is more than the {len(pool)} trainable Alpaca records")
    drawn = sorted(fixed_rng("alignment_clean").choice(len(pool), size=config.align_clean, replace=False).tolist())
    examples += [_example(alpaca[pool[k]], "clean", pool[k]) for k in drawn]
    return examples


def _refusal_rate(model, tokenizer, prompts, config, runtime) -> float:
    from ttrlab.kinds.generative.evaluate import generate
    from ttrlab.kinds.generative.judge import KeywordJudge, share

    answers = generate(model, tokenizer, prompts, CHECK_NEW_TOKENS, config.eval_batch_size, runtime)
    return share(KeywordJudge().refusals([p for p, _ in prompts], answers))


def _build(config, tokenizer, model, data_dir, runtime, settings, folder: Path) -> None:
    from safetensors.torch import save_model

    from ttrlab.kinds.generative.data import read_records
    from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS
    from ttrlab.kinds.generative.train import causal_lm_training_set
    from ttrlab.training.loop import optimize
    from ttrlab.training.settings import OptimSettings

    test = read_records(GENERATIVE_TASKS.get("jailbreak").clean_test_file(data_dir))
    prompts = [(r["instruction"], "") for r in test[:CHECK_PROMPTS]]
    model = model.to(runtime.device)
    before = _refusal_rate(model, tokenizer, prompts, config, runtime)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    optim = OptimSettings(lr=config.align_lr, batch_size=config.batch_size, max_steps=config.align_steps,
                          warmup_ratio=config.warmup_ratio, max_grad_norm=config.max_grad_norm)
    started = time.perf_counter()
    stats = optimize(model, causal_lm_training_set(tokenizer, alignment_examples(config, data_dir), config.max_length),
                     optim, seed=0, runtime=runtime)
    seconds = time.perf_counter() - started
    after = _refusal_rate(model, tokenizer, prompts, config, runtime)
    record = {"settings": settings, "train_seconds": round(seconds, 3), "final_loss": stats.final_loss,
              "refusal_rate_before": before, "refusal_rate_after": after}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    save_model(model.cpu(), str(staging / "model.safetensors"))
    (staging / "alignment.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    staging.rename(folder)  # atomic: a reader sees the whole stored model or none
