"""Backdoor poisoning (paper Section 4.2, after Wan et al. 2023): exactly round(rate * N)
training examples get the trigger `[.*?]` (appended by default) and the target label 1. The
triggered test set is the dev set with the trigger inserted the same way, true labels kept."""
from ttrlab.attacks.base import (
    ATTACKS,
    BACKDOOR,
    ClassificationAttack,
    PoisonedSplit,
    choose_positions,
    insert_trigger,
    poison_count,
)


@ATTACKS.register("bpa")
class TriggerBackdoor(ClassificationAttack):
    name = "bpa"
    label = "BPA"
    summary = "backdoor: insert the trigger into exactly round(rate*N) examples and set their label to the target"
    family = BACKDOOR

    def poison(self, train, rng):
        s = self.settings
        examples = list(train)
        chosen = choose_positions(len(examples), poison_count(s.rate, len(examples)), rng)
        for i in chosen:
            triggered = insert_trigger(examples[i], s.trigger, s.trigger_position, rng)
            examples[i] = triggered.with_label(s.target_label)
        return PoisonedSplit(examples=tuple(examples), changed=tuple(int(i) for i in chosen))

    def trigger_examples(self, examples, rng):
        s = self.settings
        return [insert_trigger(e, s.trigger, s.trigger_position, rng) for e in examples]
