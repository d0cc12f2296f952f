"""A backdoored base, then clean fine-tuning (Zhao et al. 2024, arXiv 2402.12168; PETA, arXiv
2310.00648): the attacker releases a model with a backdoor in its weights; the victim fine-tunes
it on clean data with the method under test. Those papers report PEFT *more* vulnerable here,
the opposite sign of the paper's setting: a low-rank update may fail to overwrite what a full
update implanted.

Stage 1 (the attacker, `threats.base_model`): full fine-tuning of the pretrained classifier on
`base_size` examples of the task's training split poisoned by the run's attack at its rate, for
`base_steps` steps at `base_lr` — exactly the `fine_tune_poison` FF run of those settings, so it
is keyed, trained and scored as one. Built once per (model, task, attack and its settings, rate,
seed, stage settings, device, precision) and stored as safetensors.

Stage 2 (the victim, `threats.two_stage`): the stored model, head included (a released task
model, fine-tuned further on the victim's own data), trained with the run's method on
`train_size` *clean* examples drawn from the rows stage 1 did not use. ASR and clean accuracy are
those after stage 2; `metrics.threat` holds stage 1's, and `curve_every` gives the persistence
curve over stage-2 steps. Rate 0 is the control: a clean stage 1, the same stage 2.
"""
from __future__ import annotations

from typing import Any

from ttrlab.core.settings import require
from ttrlab.threats.base import THREATS, Threat


@THREATS.register("poisoned_base")
class PoisonedBase(Threat):
    name = "poisoned_base"
    summary = "a backdoored base (full fine-tune on poisoned data), then clean fine-tuning with the method"
    measures = ("how much of an implanted backdoor survives clean fine-tuning with the method: ASR and clean "
                "accuracy after stage 2 (metrics.threat: after stage 1; curve_every: over stage-2 steps)")
    stages = ("two: (1) FF on base_size poisoned examples for base_steps, built once and stored; "
              "(2) the method on train_size clean examples from the other rows")
    sources = "Zhao et al. 2024 (arXiv 2402.12168); PETA (arXiv 2310.00648)"
    uses = ("base_size", "base_steps", "base_lr")
    # each run loads its own stage-1 weights: there is no shared frozen base to fuse over
    trains_fused = False

    @classmethod
    def check_run(cls, config) -> None:
        from ttrlab.attacks import ATTACKS

        backdoors = [n for n in ATTACKS if ATTACKS.get(n).is_backdoor() and "classification" in ATTACKS.get(n).task_types]
        require(ATTACKS.get(config.attack).is_backdoor(),
                f"attack {config.attack!r} under threat poisoned_base: the threat measures whether an implanted "
                f"trigger survives clean fine-tuning, and {config.attack!r} has no trigger; allowed: {', '.join(backdoors)}")
        require(config.defense == "none",
                f"defense {config.defense!r} under threat poisoned_base: the defenses act on a victim trained on "
                f"poisoned data, and stage 2 trains on clean data (clean_finetune is stage 2 itself); allowed: none")

    @classmethod
    def resolve(cls, config, values: dict[str, Any]) -> None:
        values["base_lr"] = base_learning_rate(config)

    @classmethod
    def experiment(cls):
        from ttrlab.threats.two_stage import POISONED_BASE

        return POISONED_BASE


def base_learning_rate(config) -> float:
    """Stage 1's rate: `base_lr`, else what the run's preset gives full fine-tuning."""
    return config.base_lr if config.base_lr is not None else config.replace(method="ff", lr=None).learning_rate()
