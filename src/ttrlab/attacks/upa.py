"""Untargeted poisoning (paper Section 4.2, after Fan et al. 2022): flip the labels of exactly
round(rate * N) training examples chosen by the seeded RNG (not a per-example coin flip)."""
from ttrlab.attacks.base import ATTACKS, UNTARGETED, ClassificationAttack, PoisonedSplit, choose_positions, poison_count


@ATTACKS.register("upa")
class UntargetedLabelFlip(ClassificationAttack):
    name = "upa"
    label = "UPA"
    summary = "untargeted poisoning: flip the labels of exactly round(rate*N) training examples"
    family = UNTARGETED

    def poison(self, train, rng):
        examples = list(train)
        chosen = choose_positions(len(examples), poison_count(self.settings.rate, len(examples)), rng)
        for i in chosen:
            examples[i] = examples[i].with_label(1 - examples[i].label)
        return PoisonedSplit(examples=tuple(examples), changed=tuple(int(i) for i in chosen))
