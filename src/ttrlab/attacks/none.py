"""No attack: the clean baseline."""
from ttrlab.attacks.base import ATTACKS, CLEAN, ClassificationAttack, PoisonedSplit


@ATTACKS.register("none")
class NoAttack(ClassificationAttack):
    name = "none"
    label = "clean"
    summary = "clean training data, no change"
    family = CLEAN
    task_types = ("classification", "generation")

    def poison(self, train, rng):
        return PoisonedSplit(examples=tuple(train), changed=())
