"""Instruction-level backdoor poisoning, IL-BPA (paper Appendix E.1, Table E.1; after Xu et
al. 2024, "Instructions as Backdoors").

The trigger is a whole instruction-like sentence prepended to the input (to the first segment
of a pair), default the official code's "Please carefully follow user's instruction.".
Exactly round(ρ·N) training examples, drawn by the seeded RNG from the whole training set as
for BPA, get the instruction and the target label. The triggered test set is the dev set with
the instruction prepended, true labels kept.

Departure: Xu et al. attack instruction-tuned LLMs, where the instruction is the task prompt;
an encoder classifier here has no prompt, so the instruction is text before the input. The
RunConfig `trigger` and `trigger_position` are not used (the option `instruction` is the
trigger, always at the start).
"""
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

DEFAULT_INSTRUCTION = "Please carefully follow user's instruction."


@ATTACKS.register("il_bpa")
class InstructionBackdoor(ClassificationAttack):
    name = "il_bpa"
    label = "IL-BPA"
    summary = "instruction-level backdoor: prepend an instruction sentence to round(rate*N) examples, label := target"
    family = BACKDOOR
    allowed_options = ("instruction",)

    def __init__(self, settings):
        super().__init__(settings)
        instruction = settings.attack_options.get("instruction", DEFAULT_INSTRUCTION)
        if not isinstance(instruction, str) or not instruction.strip():
            raise UserError(f"il_bpa: option instruction must be a non-empty sentence, got {instruction!r}")
        self.instruction = instruction.strip()

    def poison(self, train, rng):
        s = self.settings
        examples = list(train)
        chosen = choose_positions(len(examples), poison_count(s.rate, len(examples)), rng)
        for i in chosen:
            examples[i] = insert_trigger(examples[i], self.instruction, "start", rng).with_label(s.target_label)
        return PoisonedSplit(examples=tuple(examples), changed=tuple(int(i) for i in chosen))

    def trigger_examples(self, examples, rng):
        return [insert_trigger(e, self.instruction, "start", rng) for e in examples]
