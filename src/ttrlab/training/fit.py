"""Whether a run's model learned its task, judged on its training fit alone.

A classifier that predicts the same distribution for every input (a constant predictor) has a
cross-entropy no lower than the entropy of the class prior it predicts; a run whose mean training
loss over its last 50 steps (`train.final_loss`) stays at or above `share · ln(classes)` fits its
training data no better than such a predictor, and its test metrics test nothing: an under-trained
model leaning to one class scores a high "ASR" with no poison at all.

The share is the claims engine's: the manipulation check `learned` declares it once, in
`report/claims/paper_claims.yaml` (`checks.learned.max_loss_share_of_log_classes`, 0.8: 0.55 nats
for two classes), and both the check and every run's `train.learned` read it from there.
"""
from __future__ import annotations

import functools
import math

CLAIMS_FILE = "report/claims/paper_claims.yaml"  # the declared rule (read as data, not imported)


@functools.cache
def max_loss_share() -> float:
    """The declared share of ln(classes) at or above which a run did not learn its task."""
    from importlib import resources

    import yaml

    declared = yaml.safe_load(resources.files("ttrlab").joinpath(CLAIMS_FILE).read_text(encoding="utf-8"))
    return float(declared["checks"]["learned"]["max_loss_share_of_log_classes"])


def loss_limit(classes: int) -> float:
    """The training loss a run of `classes` classes must get below to have learned its task."""
    return max_loss_share() * math.log(classes)


def learned(final_loss: float | None, classes: int | None) -> bool | None:
    """True if the training fit beats a constant predictor, False if not; None when there is
    nothing to judge (no training step, or not a classifier)."""
    if final_loss is None or classes is None or classes < 2:
        return None
    return bool(final_loss < loss_limit(classes))


def not_learned_message(final_loss: float, classes: int, config) -> str:
    """One line on a run that did not learn its task (`config`: its `OptimSettings`), naming the
    learning-rate preset made for a run of its length when its preset was made for a far
    longer one (the paper's rates, made for 10,000 steps, barely move a model in a few hundred)."""
    from ttrlab.training.settings import LR_PRESETS

    said = (f"the model did not learn the task: its training loss {final_loss:.3f} is not below "
            f"{loss_limit(classes):.3f} ({max_loss_share():g}·ln {classes} classes), no better than a constant predictor, "
            f"so its accuracy and ASR test nothing (train.learned: false)")
    preset = LR_PRESETS.get(config.lr_preset)
    if config.lr is None and preset.made_for_steps and config.max_steps < preset.made_for_steps:
        shorter = [p for p in map(LR_PRESETS.get, LR_PRESETS.registered())
                   if p.made_for_steps and p.made_for_steps < preset.made_for_steps]
        if shorter:
            nearest = min(shorter, key=lambda p: abs(math.log(p.made_for_steps / max(config.max_steps, 1))))
            return (f"{said}; it trained {config.max_steps} steps at the {preset.name!r} preset's learning rate "
                    f"{config.learning_rate():g}, made for {preset.made_for_steps:,} steps: use --lr-preset "
                    f"{nearest.name} (made for {nearest.made_for_steps:,})")
    return f"{said}; train longer (--max-steps) or at another learning rate (--lr, --lr-preset)"


def not_learned_summary(count: int, total: int) -> str:
    """One line on the runs of a job that did not learn their task (`count` of its `total`)."""
    return (f"{count} of the {total} runs did not learn the task (train.learned false: a training loss not below "
            f"{max_loss_share():g}·ln(classes), no better than a constant predictor); their accuracy and ASR test "
            f"nothing: train longer or at a learning rate made for this many steps (lr_preset cpu for a few hundred)")
