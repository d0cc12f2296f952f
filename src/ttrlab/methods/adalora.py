"""AdaLoRA (Zhang et al. 2023) through peft's AdaLoraConfig: SVD-shaped adapters P·Λ·Q that
start at `adalora_init_r` and are pruned, by an importance score from the gradients, to an average
of `adalora_target_r` over the run's schedule. The pruning happens in peft's
`update_and_allocate(step)`, which the training loop calls after every optimizer step through
`PreparedModel.after_step`. Target modules: peft's default for the architecture. A, B are peft's
own init (N(0, 0.02²), Λ = 0): ttrlab's variance-scaled init is LoRA's, not AdaLoRA's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttrlab.methods.base import METHODS, Method, PreparedModel, count_parameters
from ttrlab.methods.lora import HIGH_RANK_FROM, peft_task_type, wrap
from ttrlab.core.settings import Section, require, setting


@dataclass
class AdaLoRASettings(Section):
    """AdaLoRA's knobs (ignored by runs of other methods, and not part of their identity)."""

    METHOD_SETTINGS = True

    adalora_init_r: int = setting(12, "AdaLoRA: rank of every adapter before pruning")
    adalora_target_r: int = setting(8, "AdaLoRA: average rank left after pruning (the budget)")
    adalora_alpha: float = setting(16.0, "AdaLoRA: alpha (scaling alpha / r)")
    adalora_tinit: float = setting(0.1, "AdaLoRA: share of max_steps before pruning starts")
    adalora_tfinal: float = setting(0.2, "AdaLoRA: share of max_steps at the end with the final ranks fixed")
    adalora_delta_t: int = setting(1, "AdaLoRA: steps between two budget allocations")
    adalora_orth_reg: float = setting(0.5, "AdaLoRA: weight of the orthogonality penalty on P and Q")

    def check(self) -> None:
        require(self.adalora_init_r >= 1, f"adalora_init_r {self.adalora_init_r} must be >= 1")
        require(1 <= self.adalora_target_r <= self.adalora_init_r,
                f"adalora_target_r {self.adalora_target_r} must be in [1, adalora_init_r={self.adalora_init_r}]")
        require(self.adalora_alpha > 0, f"adalora_alpha {self.adalora_alpha} must be > 0")
        require(0.0 <= self.adalora_tinit < 1.0, f"adalora_tinit {self.adalora_tinit} is outside [0, 1)")
        require(0.0 <= self.adalora_tfinal < 1.0, f"adalora_tfinal {self.adalora_tfinal} is outside [0, 1)")
        require(self.adalora_tinit + self.adalora_tfinal < 1.0,
                f"adalora_tinit + adalora_tfinal = {self.adalora_tinit + self.adalora_tfinal:g} leaves no pruning phase; "
                "allowed: a sum below 1")
        require(self.adalora_delta_t >= 1, f"adalora_delta_t {self.adalora_delta_t} must be >= 1")
        require(self.adalora_orth_reg >= 0, f"adalora_orth_reg {self.adalora_orth_reg} must be >= 0")

    def check_model(self, model_config) -> None:
        from ttrlab.models.config import hidden_size_of

        if METHODS.get(self.method).settings is not AdaLoRASettings:
            return
        hidden = hidden_size_of(model_config)
        require(hidden is None or self.adalora_init_r <= hidden,
                f"adalora_init_r {self.adalora_init_r} exceeds the hidden size {hidden} of model {self.model!r}; "
                f"allowed: 1 to {hidden}")


def schedule(settings: AdaLoRASettings, max_steps: int) -> dict[str, int]:
    """peft's step schedule from the shares: total_step = max_steps (at least 2, so a run of 0 or
    1 steps still has a valid schedule; it never prunes), at least one final step (peft fixes
    the ranks at step total - tfinal) and at least one pruning step."""
    total = max(max_steps, 2)
    tfinal = max(1, round(settings.adalora_tfinal * total))
    tinit = min(round(settings.adalora_tinit * total), total - tfinal - 1)
    return {"total_step": total, "tinit": tinit, "tfinal": tfinal}


class AdaptiveLoRA(Method):
    name = "adalora"
    label = "AdaLoRA"
    summary = "AdaLoRA (peft): SVD-form adapters, rank budget re-allocated during training"
    settings = AdaLoRASettings

    def prepare(self, model, config):
        from peft import AdaLoraConfig

        settings = AdaLoRASettings.of(config)
        steps = schedule(settings, config.max_steps)
        peft_config = AdaLoraConfig(
            task_type=peft_task_type(config.TASK_TYPE), target_modules=None, init_r=settings.adalora_init_r,
            target_r=settings.adalora_target_r, lora_alpha=settings.adalora_alpha, deltaT=settings.adalora_delta_t,
            orth_reg_weight=settings.adalora_orth_reg, **steps)
        peft_model = wrap(model, peft_config, config.seed, "adalora")
        trainable, total = count_parameters(peft_model)
        adapted = sorted(peft_model.peft_config["default"].target_modules)
        details: dict[str, Any] = {"init": "peft", "init_r": settings.adalora_init_r,
                                   "target_r": settings.adalora_target_r, "target_modules": adapted,
                                   # peft's SVDLinear: (x·(A∘Λ)ᵀ·Bᵀ)·α / init_r (Λ pruned, not the divisor)
                                   "lora_scaling": settings.adalora_alpha / settings.adalora_init_r, **steps}

        def after_step(step: int) -> None:
            peft_model.base_model.update_and_allocate(step)

        return PreparedModel(peft_model, trainable, total, details, after_step=after_step)

    def preset_learning_rate(self, preset, config):
        return preset.adapter_low_rank if config.adalora_init_r < HIGH_RANK_FROM else preset.adapter_high_rank

    def settings_label(self, values) -> str:
        return f"r={values.get('adalora_init_r')}→{values.get('adalora_target_r')}"

    def describe(self, values) -> str:
        return f"AdaLoRA r={values.get('adalora_init_r')}→{values.get('adalora_target_r')}, α={values.get('adalora_alpha'):g}"


METHODS.register("adalora")(AdaptiveLoRA())
