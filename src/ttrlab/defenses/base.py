"""What a defense is, and the settings every defense reads.

A defense acts on a classification run ("train" kind) after its victim has trained normally on
the poisoned training split (the same seed gives the same poisoned indices as the undefended
run). Three kinds (`Defense.kind`):

- `filter`: score every training example with the trained victim, drop the top-scored
  `defense_fraction`, retrain a fresh model (same method, same seed) on the rest;
- `detector`: screen or clean each test input at inference time, before the victim classifies it;
- `post-training`: change the trained victim (a few steps on held-out clean data).

The defended run's `metrics` are the defended system's usual `clean`, `triggered`, `asr` plus
`metrics["defense"]` (the undefended `asr_before`, `clean_accuracy_before` and the defense's
detection numbers); the result's "defense" section holds its name, settings and counts.

A defense's knobs are settings of `DefenseSettings`; a run's identity holds only those the
chosen defense reads (`Defense.uses`), and none at all when no defense is chosen, so an
undefended run's key holds no defense setting (pinned in tests/test_defenses.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ttrlab.core.registry import Registry
from ttrlab.core.settings import Section, require, setting

DEFENSES: Registry[type["Defense"]] = Registry("defense")

# The default share a filter drops: Tran et al.'s 1.5 x an upper bound on the poisoning rate,
# here the run's own rate (an oracle bound: a real defender must guess it), clipped so that a
# clean run still pays a defense's cost and a huge rate does not drop most of the data.
DEFAULT_FRACTION_FACTOR = 1.5
DEFAULT_FRACTION_RANGE = (0.01, 0.5)


@dataclass
class DefenseSettings(Section):
    """The defense of a classification run against its poisoned training data (`ttrlab defenses`)."""

    defense: str = setting("none", "none | spectral | activation_clustering | loss_filter | onion | strip | "
                                   "clean_finetune (`ttrlab defenses`)")
    defense_fraction: float | None = setting(None, "filters: share of training examples dropped "
                                                   "(default: 1.5 x rate, clipped to [0.01, 0.5])")
    defense_holdout: int = setting(200, "strip, clean_finetune: held-out clean training examples "
                                        "(not in the run's subset, seeded)")
    ac_dims: int = setting(10, "activation_clustering: PCA dimensions before the per-class 2-means")
    loss_direction: str = setting("auto", "loss_filter: low (drop the lowest-loss examples) | high | auto "
                                          "(backdoor attacks: low, others: high)")
    onion_lm: str = setting("smollm2", "onion: causal LM of the perplexities (smollm2, a folder or a hub id)")
    onion_threshold: float = setting(0.0, "onion: remove words whose removal lowers the perplexity by more than this")
    onion_max_inputs: int = setting(100, "onion: clean and triggered test inputs cleaned (the first of the scored)")
    onion_batch_size: int = setting(32, "onion: texts per LM batch")
    strip_copies: int = setting(20, "strip: perturbed copies per input")
    strip_perturbation: str = setting("replace", "strip: replace (words swapped for held-out words) | concat "
                                                 "(a held-out sentence appended)")
    strip_replace_ratio: float = setting(0.5, "strip: share of an input's words replaced in each copy (replace)")
    strip_frr: float = setting(0.05, "strip: false rejection rate on held-out clean inputs that sets the threshold")
    strip_max_inputs: int | None = setting(None, "strip: clean and triggered test inputs screened (default: all scored)")
    finetune_steps: int = setting(50, "clean_finetune: optimizer steps on the held-out clean examples")
    finetune_lr: float | None = setting(None, "clean_finetune: learning rate (default: the run's)")

    # knob → (check, what is allowed); checked only for the knobs the chosen defense reads
    CHECKS: ClassVar[dict[str, tuple[Any, str]]] = {
        "defense_fraction": (lambda v: v is None or 0.0 < v < 1.0, "must lie in (0, 1) (or unset: 1.5 x rate)"),
        "defense_holdout": (lambda v: v >= 1, "must be >= 1"),
        "ac_dims": (lambda v: v >= 1, "must be >= 1"),
        "loss_direction": (lambda v: v in ("low", "high", "auto"), "must be low, high or auto"),
        "onion_lm": (lambda v: isinstance(v, str) and v.strip() != "", "must name a causal LM"),
        "onion_threshold": (lambda v: math.isfinite(v), "must be a finite number (a perplexity drop; ONION's t)"),
        "onion_max_inputs": (lambda v: v >= 1, "must be >= 1"),
        "onion_batch_size": (lambda v: v >= 1, "must be >= 1"),
        "strip_copies": (lambda v: v >= 2, "must be >= 2"),
        "strip_perturbation": (lambda v: v in ("replace", "concat"), "must be replace or concat"),
        "strip_replace_ratio": (lambda v: 0.0 < v <= 1.0, "must lie in (0, 1]"),
        "strip_frr": (lambda v: 0.0 < v < 1.0, "must lie in (0, 1)"),
        "strip_max_inputs": (lambda v: v is None or v >= 1, "must be >= 1 (or unset: all)"),
        "finetune_steps": (lambda v: v >= 1, "must be >= 1"),
        "finetune_lr": (lambda v: v is None or v > 0, "must be > 0 (or unset: the run's)"),
    }

    def check(self) -> None:
        defense = DEFENSES.get(self.defense)  # unknown: "did you mean"
        for name in defense.uses:
            ok, allowed = DefenseSettings.CHECKS[name]
            value = getattr(self, name)
            require(ok(value), f"{name} {value!r} {allowed}")
        defense.check_run(self)

    def resolve(self, values: dict[str, Any]) -> None:
        if "defense_fraction" in DEFENSES.get(self.defense).uses:
            values["defense_fraction"] = filter_fraction(self)

    def identity(self, values: dict[str, Any]) -> None:
        # knobs of other defenses do not change this run; no defense: none of them (an undefended run's key holds no defense setting)
        defense = DEFENSES.get(self.defense)
        for name in DefenseSettings.field_names():
            if not defense.changes_run or (name != "defense" and name not in defense.uses):
                values.pop(name, None)


def filter_fraction(config) -> float:
    """The share of training examples a filter drops (`defense_fraction`, else 1.5 x rate, clipped)."""
    if config.defense_fraction is not None:
        return config.defense_fraction
    low, high = DEFAULT_FRACTION_RANGE
    return round(float(min(max(DEFAULT_FRACTION_FACTOR * config.rate, low), high)), 6)


@dataclass
class Outcome:
    """What a defense gives back: the defended system's `metrics` (clean, triggered, asr), its
    `detection` numbers (into metrics["defense"]) and `counts` (into the "defense" section)."""

    metrics: dict[str, Any]
    detection: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # more of the "defense" section (e.g. the retrain)


class Defense:
    """Base of every defense. Subclasses set `name`, `summary`, `kind`, `uses` (the knobs of
    DefenseSettings they read) and implement `defend(victim)` → `Outcome`; `victim` is a
    `ttrlab.defenses.victim.Victim` (the trained model, its data and how to score or retrain)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    kind: ClassVar[str]  # none | filter | detector | post-training
    uses: ClassVar[tuple[str, ...]] = ()
    changes_run: ClassVar[bool] = True  # False only for `none`: the run is the undefended one

    def __init__(self, settings: DefenseSettings, config):
        self.settings = settings
        self.config = config

    @classmethod
    def check_run(cls, config) -> None:
        """Raise UserError where the rest of the config does not fit this defense."""

    def defend(self, victim) -> Outcome:
        raise NotImplementedError


def build_defense(config) -> Defense:
    return DEFENSES.get(config.defense)(DefenseSettings.of(config), config)


# ---- detection numbers ------------------------------------------------------------------------
def auroc(scores, positives) -> float | None:
    """Area under the ROC curve of `scores` ranking the `positives` (bool mask) above the rest;
    None when either side is empty (no poisoned example: nothing to rank)."""
    from sklearn.metrics import roc_auc_score

    positives = np.asarray(positives, dtype=bool)
    if positives.all() or not positives.any():
        return None
    return float(roc_auc_score(positives, np.asarray(scores, dtype=np.float64)))


def detection_metrics(scores, poisoned, removed) -> dict[str, Any]:
    """Precision and recall of the `removed` mask against the `poisoned` mask, AUROC of the
    scores, and the counts. Precision is None when nothing was removed, recall when nothing was
    poisoned."""
    poisoned, removed = np.asarray(poisoned, dtype=bool), np.asarray(removed, dtype=bool)
    hit = int((poisoned & removed).sum())
    return {
        "precision": hit / int(removed.sum()) if removed.any() else None,
        "recall": hit / int(poisoned.sum()) if poisoned.any() else None,
        "auroc": auroc(scores, poisoned),
        "removed": int(removed.sum()),
        "poisoned_removed": hit,
        "poisoned": int(poisoned.sum()),
    }


def top_fraction(scores, fraction: float) -> np.ndarray:
    """Mask of the round(fraction * N) highest scores (ties: the earlier position first)."""
    from ttrlab.attacks import poison_count

    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[: poison_count(fraction, len(scores))]] = True
    return mask


def rejecting_metrics(labels, predictions, rejected, positive_label: int = 1, num_labels: int = 2) -> dict[str, float]:
    """`evaluation.classification_metrics` of a system that may reject inputs: a rejected input
    counts as wrong for accuracy and as predicting no class for precision, recall and F1 (of the
    positive label for a binary task, macro-averaged over the classes for more)."""
    from sklearn.metrics import precision_recall_fscore_support

    labels, predictions = np.asarray(labels), np.asarray(predictions)
    predictions = np.where(np.asarray(rejected, dtype=bool), -1, predictions)  # -1: no class
    binary = num_labels == 2
    classes = [positive_label] if binary else list(range(num_labels))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=classes, average=None if binary else "macro", zero_division=0)
    values = {"accuracy": float((predictions == labels).mean()) if len(labels) else 0.0}
    for name, value in (("precision", precision), ("recall", recall), ("f1", f1)):
        values[name] = float(value[0] if binary else value)
    if not binary:
        values["macro_f1"] = values["f1"]
    return values
