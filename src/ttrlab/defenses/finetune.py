"""Clean fine-tuning, the post-training defense (the fine-tuning half of Fine-Pruning, Liu et
al. 2018): go on training the victim for `finetune_steps` steps on `defense_holdout` clean
training examples outside the run's subset (drawn by the seed's `defense_holdout` stream), with
the run's method (for LoRA: the adapter and head only), optimisation settings and, unless
`finetune_lr` says otherwise, learning rate. Clean data never shows the trigger, so a backdoor
fades only as far as the updates overwrite it; the defended metrics are the fine-tuned model's.
"""
from __future__ import annotations

from ttrlab.defenses.base import DEFENSES, Defense, Outcome


@DEFENSES.register("clean_finetune")
class CleanFinetune(Defense):
    name = "clean_finetune"
    summary = "post-training: a few steps of fine-tuning the trained victim on held-out clean data"
    kind = "post-training"
    uses = ("defense_holdout", "finetune_steps", "finetune_lr")

    def defend(self, victim):
        s = self.settings
        heldout = victim.heldout(s.defense_holdout)
        train = victim.train_more(victim.prepared.model, heldout, s.finetune_steps, s.finetune_lr)
        metrics = victim.score(victim.prepared.model)
        before, after = victim.before, metrics
        return Outcome(
            metrics=metrics,
            detection={"steps": s.finetune_steps, "asr_after": after["asr"],
                       "clean_accuracy_after": after["clean"]["accuracy"]},
            counts={"heldout": len(heldout)},
            details={"finetune": train, "before": {"clean": before["clean"], "triggered": before["triggered"],
                                                   "asr": before["asr"]}},
        )
