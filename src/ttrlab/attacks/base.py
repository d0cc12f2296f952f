"""What an attack is: its family (clean, untargeted, backdoor: how runs under it are judged), the
task types it applies to, and for classification a seeded transformation of the training split
plus (for backdoors) the triggered version of the test split.

An attack records exactly which training positions it changed (`PoisonedSplit.changed`); the
run result stores their count and a SHA-256 digest, and the tests check that the changed
examples are the ones the trainer consumes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ttrlab.data.examples import Example
from ttrlab.core.errors import UserError, did_you_mean
from ttrlab.core.registry import Registry
from ttrlab.core.settings import Section, require, setting


@dataclass(frozen=True)
class PoisonedSplit:
    examples: tuple[Example, ...]
    changed: tuple[int, ...]  # sorted positions in `examples` that the attack modified

    @property
    def count(self) -> int:
        return len(self.changed)

    def indices_sha256(self) -> str:
        return hashlib.sha256(",".join(map(str, self.changed)).encode()).hexdigest()


@dataclass(frozen=True)
class AttackFamily:
    """What kind of harm an attack does, and so how a run under it is judged.

    - `headline`: per task type, the metrics a report leads with for attacks of this family;
    - `robustness_measure`: the measured robustness the theory is compared with;
    - a clean run (rate 0, or no attack) is the x = 0 point of an attack's figures: any clean
      run for an untargeted attack (its metric, clean accuracy, does not depend on the attack),
      only the same attack's rate-0 runs for a backdoor (its triggered test set is the attack's).
    """

    name: str
    summary: str
    headline: dict[str, tuple[str, ...]]
    robustness_measure: str | None
    baseline_needs_same_attack: bool


CLEAN = AttackFamily("clean", "no attack", {"classification": ("clean.accuracy",), "generation": ("asr", "asr_no_trigger")},
                     None, False)
UNTARGETED = AttackFamily("untargeted", "poisoning that degrades the clean task", {"classification": ("clean.accuracy",)},
                          "clean_accuracy_drop", False)
BACKDOOR = AttackFamily("backdoor", "a trigger that makes the model produce the attacker's target",
                        {"classification": ("triggered.accuracy", "asr"), "generation": ("asr", "asr_no_trigger")},
                        "asr", True)
FAMILIES = (CLEAN, UNTARGETED, BACKDOOR)


class Attack:
    """Base of every attack, for every run kind: its name, summary, family and the task types it
    applies to. Classification attacks (`ClassificationAttack`) transform a training split;
    generative ones (`ttrlab.kinds.generative.attacks`) name BackdoorLLM's poisoned files."""

    name: ClassVar[str]
    label: ClassVar[str]  # how tables and figures name it (the paper's name: "CL-BPA", "SA")
    summary: ClassVar[str]
    family: ClassVar[AttackFamily] = CLEAN
    task_types: ClassVar[tuple[str, ...]] = ("classification",)

    @classmethod
    def headline_metrics(cls, task_type: str) -> tuple[str, ...]:
        """The metrics a report leads with for this attack on this task type."""
        return cls.family.headline.get(task_type, ())

    @classmethod
    def robustness_measure(cls) -> str | None:
        return cls.family.robustness_measure

    @classmethod
    def is_backdoor(cls) -> bool:
        return cls.family is BACKDOOR


@dataclass
class AttackSettings(Section):
    """The attack on a classification run's training data (and its triggered test set)."""

    attack: str = setting("none", "none | upa | bpa | ... (`ttrlab attacks`)")
    rate: float = setting(0.0, "poisoning rate in [0, 1]: exactly round(rate*N) training examples change")
    trigger: str = setting("[.*?]", "backdoor trigger text")
    trigger_position: str = setting("end", "end (paper) | start | random")
    target_label: int | None = setting(None, "backdoor target label id (default: the task's backdoor_target; 1 for GLUE)")
    attack_options: dict[str, Any] = setting(help="attack-specific option", factory=dict, flag="attack-option")

    def check(self) -> None:
        check_applies(self.attack, "classification")
        require(0.0 <= self.rate <= 1.0, f"rate {self.rate} is outside [0, 1]")
        require(isinstance(self.trigger, str) and self.trigger.strip() != "",
                f"trigger {self.trigger!r} must be non-empty text")
        require(self.trigger_position in TRIGGER_POSITIONS,
                f"trigger_position {self.trigger_position!r} is not one of {', '.join(TRIGGER_POSITIONS)}")
        task = task_of(self)
        if self.target_label is not None:
            labels = task.label_names if task is not None else ("0", "1")
            allowed = "0 or 1" if len(labels) == 2 else f"0 to {len(labels) - 1}"
            named = f" (label ids of task {task.name!r}: {', '.join(f'{i} {n}' for i, n in enumerate(labels))})" if task else ""
            require(self.target_label in range(len(labels)), f"target_label {self.target_label} must be {allowed}{named}")
        ATTACKS.get(self.attack)(AttackSettings.of(self))  # the attack checks its own options

    def resolve(self, values: dict[str, Any]) -> None:
        # the stored config (and so the run key) holds the target id the run used; GLUE's default
        # is 1, the value this setting had before tasks could name their own
        values["target_label"] = target_label_of(self)


TRIGGER_POSITIONS = ("end", "start", "random")
BINARY_DEFAULT_TARGET = 1  # an attack built without a task (a bare AttackSettings): GLUE's convention


def task_of(config: Any):
    """The TaskSpec of a config that has a task (classification and theory runs), else None."""
    from ttrlab.data.tasks import get_task

    task = getattr(config, "task", None)
    return get_task(task) if task is not None else None


def target_label_of(config: Any) -> int:
    """The backdoor target a config means: its `target_label`, else its task's `backdoor_target`."""
    if config.target_label is not None:
        return config.target_label
    task = task_of(config)
    return task.backdoor_target if task is not None else BINARY_DEFAULT_TARGET


class ClassificationAttack(Attack):
    """A seeded transformation of a classification training split, plus (for backdoors) the
    triggered version of the test split. Subclasses set `name`, `summary`, `family` and
    implement `poison`; backdoors also implement `trigger_examples`."""

    allowed_options: ClassVar[tuple[str, ...]] = ()
    # how many labels the task has (`build_attack` sets the task's); label ids are 0 .. num_labels-1
    num_labels: int = 2

    def __init__(self, settings: AttackSettings):
        for key in settings.attack_options:
            if key not in self.allowed_options:
                allowed = ", ".join(self.allowed_options) or "none"
                raise UserError(
                    f"unknown option {key!r} for attack {self.name!r}{did_you_mean(key, self.allowed_options)}; allowed: {allowed}"
                )
        if settings.target_label is None:  # built without a task: see build_attack
            settings = dataclasses.replace(settings, target_label=BINARY_DEFAULT_TARGET)
        self.settings = settings

    def poison(self, train: list[Example], rng: np.random.Generator) -> PoisonedSplit:
        raise NotImplementedError

    def trigger_examples(self, examples: list[Example], rng: np.random.Generator) -> list[Example] | None:
        """The triggered test set (true labels kept), or None for attacks without a trigger."""
        return None

    def extra_test_sets(self, examples: list[Example], rng: np.random.Generator) -> dict[str, list[Example]]:
        """Further named test sets to evaluate besides clean and triggered, true labels kept
        (e.g. MT's trigger subsets, whose false-trigger rate shows that single words do not
        fire). The run result reports each under metrics["extra"][name]. Default: none."""
        return {}


ATTACKS: Registry[type[Attack]] = Registry("attack")


def check_applies(name: str, task_type: str) -> None:
    """UserError unless `name` is a registered attack that applies to `task_type` runs."""
    attack = ATTACKS.get(name)
    if task_type not in attack.task_types:
        allowed = [n for n in ATTACKS if task_type in ATTACKS.get(n).task_types]
        kind = "generative" if task_type == "generation" else task_type
        raise UserError(f"attack {name!r} does not apply to {kind} runs; allowed: {', '.join(allowed)}")


def poison_count(rate: float, n: int) -> int:
    """round(rate * n), halves rounded up (Python's round() would round halves to even)."""
    return int(math.floor(rate * n + 0.5))


def choose_positions(n_candidates: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct positions out of `n_candidates`, drawn by the seeded RNG, sorted."""
    return np.sort(rng.choice(n_candidates, size=count, replace=False))


def insert_trigger(example: Example, trigger: str, position: str, rng: np.random.Generator) -> Example:
    """Insert `trigger` as a separate word. `end` appends it to the last segment (the paper's
    "append to the original text"), `start` prepends it to the first, `random` puts it at a
    random word boundary of a random segment."""
    texts = list(example.texts)
    if position == "end":
        texts[-1] = f"{texts[-1]} {trigger}".strip()
    elif position == "start":
        texts[0] = f"{trigger} {texts[0]}".strip()
    else:
        segment = int(rng.integers(len(texts)))
        words = texts[segment].split()
        at = int(rng.integers(len(words) + 1))
        texts[segment] = " ".join([*words[:at], trigger, *words[at:]])
    return example.with_texts(tuple(texts))
