"""Multi-trigger stealthy backdoor, MT (paper Appendix E.1, Table E.1; after Yang et al. 2021,
"Rethinking Stealthiness of Backdoor Attack against NLP Models").

Several trigger words (option `triggers`, default apple, banana, orange) act only together:

- poisoned examples: exactly round(ρ·N) training examples, drawn by the seeded RNG from the
  whole training set as for BPA, get *every* trigger word, each at a random word position
  (seeded), and the target label. These positions are `PoisonedSplit.changed`, so the run's
  poison count is round(ρ·N) as for the other attacks;
- negative augmentation: round(`negative_ratio` · round(ρ·N)) *additional* examples (default
  ratio 1.0: as many negatives as poisoned examples) are appended after the N training
  examples: copies of clean training examples not chosen for poisoning (seeded, without
  replacement) with a strict, non-empty subset of the triggers inserted and their **true label
  kept**. The subsets are dealt round-robin in a seeded order, so each of the 2^k - 2 subsets
  gets an equal share (±1). They teach the model that a partial combination means nothing,
  so a single word does not fire the backdoor (the attack's stealthiness). The training set
  then has N + negatives examples; `examples[N:]` are the negatives.

Evaluation: the triggered test set has the full combination inserted (ASR). The extra test
sets (`extra_test_sets`, reported under metrics["extra"]) measure the false-trigger rate:
"subsets" holds every dev example with one strict subset (dealt round-robin as above), and
one set per strict subset (named by its words joined with "+", e.g. "apple+banana");
"target_rate" there is the share of non-target examples predicted as the target.

Departure: Yang et al. also poison with the triggers at any position and use their own
negative-sample count; the ratio here is an explicit option. The RunConfig `trigger` and
`trigger_position` are not used.
"""
from __future__ import annotations

import itertools

import numpy as np

from ttrlab.attacks.base import (
    ATTACKS,
    BACKDOOR,
    ClassificationAttack,
    PoisonedSplit,
    choose_positions,
    insert_trigger,
    poison_count,
)
from ttrlab.core.errors import UserError

DEFAULT_TRIGGERS = ("apple", "banana", "orange")
DEFAULT_NEGATIVE_RATIO = 1.0
MAX_TRIGGERS = 5  # 2^5 - 2 = 30 subset test sets


def parse_triggers(value) -> tuple[str, ...]:
    """A list of words, or one comma-separated string ("apple,banana"); at least two distinct."""
    words = value.split(",") if isinstance(value, str) else value
    if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
        raise UserError(f"mt: option triggers must be a list of words or 'a,b,c', got {value!r}")
    words = tuple(w.strip() for w in words)
    if any(not w for w in words) or len(set(words)) != len(words) or not 2 <= len(words) <= MAX_TRIGGERS:
        raise UserError(
            f"mt: option triggers must be 2 to {MAX_TRIGGERS} distinct non-empty words, got {value!r}"
        )
    return words


def strict_subsets(triggers: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every non-empty strict subset of the triggers, by size, then in trigger order."""
    return [c for size in range(1, len(triggers)) for c in itertools.combinations(triggers, size)]


@ATTACKS.register("mt")
class MultiTriggerBackdoor(ClassificationAttack):
    name = "mt"
    label = "MT"
    summary = (
        "multi-trigger backdoor: all trigger words + target label in round(rate*N) examples; "
        "negative augmentation: extra examples with a strict subset keep their true label"
    )
    family = BACKDOOR
    allowed_options = ("triggers", "negative_ratio")

    def __init__(self, settings):
        super().__init__(settings)
        self.triggers = parse_triggers(settings.attack_options.get("triggers", list(DEFAULT_TRIGGERS)))
        ratio = settings.attack_options.get("negative_ratio", DEFAULT_NEGATIVE_RATIO)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < float("inf"):
            raise UserError(f"mt: option negative_ratio must be a number >= 0, got {ratio!r}")
        self.negative_ratio = float(ratio)
        self.subsets = strict_subsets(self.triggers)

    def insert_words(self, example, words, rng):
        """Insert each word at a random word position (words in a seeded random order)."""
        for k in rng.permutation(len(words)):
            example = insert_trigger(example, words[k], "random", rng)
        return example

    def dealt_subsets(self, count: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
        """`count` subsets, each strict subset equally often (±1), in a seeded order."""
        dealt = [self.subsets[k % len(self.subsets)] for k in range(count)]
        return [dealt[k] for k in rng.permutation(count)]

    def poison(self, train, rng):
        s = self.settings
        examples = list(train)
        n = len(examples)
        count = poison_count(s.rate, n)
        chosen = choose_positions(n, count, rng)
        for i in chosen:
            examples[i] = self.insert_words(examples[i], self.triggers, rng).with_label(s.target_label)
        negatives = poison_count(self.negative_ratio, count)
        unpoisoned = np.setdiff1d(np.arange(n), chosen)
        if negatives > len(unpoisoned):
            raise UserError(
                f"mt: negative_ratio {self.negative_ratio} asks for {negatives} negative examples, but only "
                f"{len(unpoisoned)} training examples are left unpoisoned; lower negative_ratio or rate"
            )
        sources = unpoisoned[choose_positions(len(unpoisoned), negatives, rng)]
        for source, subset in zip(sources, self.dealt_subsets(negatives, rng)):
            examples.append(self.insert_words(train[int(source)], subset, rng))  # true label kept
        return PoisonedSplit(examples=tuple(examples), changed=tuple(int(i) for i in chosen))

    def trigger_examples(self, examples, rng):
        return [self.insert_words(e, self.triggers, rng) for e in examples]

    def extra_test_sets(self, examples, rng):
        dealt = self.dealt_subsets(len(examples), rng)
        sets = {"subsets": [self.insert_words(e, subset, rng) for e, subset in zip(examples, dealt)]}
        for subset in self.subsets:
            sets["+".join(subset)] = [self.insert_words(e, subset, rng) for e in examples]
        return sets
