"""Untargeted poisoning (paper Section 4.2, after Fan et al. 2022): flip the labels of exactly
round(rate * N) training examples chosen by the seeded RNG (not a per-example coin flip); with
more than two labels, each to a label drawn uniformly from the other labels."""
from ttrlab.attacks.base import ATTACKS, UNTARGETED, ClassificationAttack, PoisonedSplit, choose_positions, poison_count


@ATTACKS.register("upa")
class UntargetedLabelFlip(ClassificationAttack):
    name = "upa"
    label = "UPA"
    summary = "untargeted poisoning: flip the labels of exactly round(rate*N) training examples (to a uniformly drawn other label)"
    family = UNTARGETED

    def poison(self, train, rng):
        examples = list(train)
        chosen = choose_positions(len(examples), poison_count(self.settings.rate, len(examples)), rng)
        # each flipped label becomes a uniformly drawn *other* label: label + U{1..K-1} mod K. With
        # K = 2 the offset is always 1 (label := 1 - label); the draws come after the positions,
        # so the positions a seed poisons do not depend on the number of labels
        offsets = rng.integers(1, self.num_labels, size=len(chosen))
        for i, offset in zip(chosen, offsets):
            examples[i] = examples[i].with_label(int((examples[i].label + offset) % self.num_labels))
        return PoisonedSplit(examples=tuple(examples), changed=tuple(int(i) for i in chosen))
