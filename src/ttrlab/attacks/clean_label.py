"""Clean-label backdoor poisoning, CL-BPA (paper Appendix E.1, Table E.1; after Wan et al. 2023).

The trigger (default `[.*?]`, placed by `trigger_position` as in BPA) goes only into training
examples whose true label already is the target label, and no label changes: every poisoned
example is correctly labelled, so a label audit finds nothing. The model can still learn
"trigger ⇒ target" because the trigger only ever co-occurs with the target.

ρ is the share of the whole training set, as for BPA: exactly round(ρ·N) examples are
triggered, drawn by the seeded RNG from the target-label examples. If fewer than that many
examples carry the target label, the rate is impossible for a clean-label attack and the run
stops with a UserError naming the largest possible rate. The triggered test set is the dev
set with the trigger inserted the same way (true labels kept), as for BPA.
"""
import numpy as np

from ttrlab.attacks.base import ATTACKS, PoisonedSplit, choose_positions, insert_trigger, poison_count
from ttrlab.attacks.bpa import TriggerBackdoor
from ttrlab.core.errors import UserError


@ATTACKS.register("cl_bpa")
class CleanLabelBackdoor(TriggerBackdoor):
    """BPA's trigger and triggered test set; only the choice of poisoned examples differs."""

    name = "cl_bpa"
    label = "CL-BPA"
    summary = "clean-label backdoor: insert the trigger into round(rate*N) target-label examples, labels unchanged"

    def poison(self, train, rng):
        s = self.settings
        examples = list(train)
        count = poison_count(s.rate, len(examples))
        target_positions = np.array([i for i, e in enumerate(examples) if e.label == s.target_label], dtype=np.int64)
        if count > len(target_positions):
            largest = len(target_positions) / len(examples) if examples else 0.0
            raise UserError(
                f"cl_bpa: rate {s.rate} means {count} of {len(examples)} training examples, but only "
                f"{len(target_positions)} have the target label {s.target_label} (a clean-label attack triggers "
                f"only those); use rate <= {largest:.4f}"
            )
        chosen = np.sort(target_positions[choose_positions(len(target_positions), count, rng)])
        for i in chosen:
            examples[i] = insert_trigger(examples[i], s.trigger, s.trigger_position, rng)
        return PoisonedSplit(examples=tuple(examples), changed=tuple(int(i) for i in chosen))
