"""LoRA through peft, with ttrlab's variance-scaled init of A (B stays 0).

The classification head is trained fully (peft's SEQ_CLS `modules_to_save`), as in Hu et al.
The paper's official code instead wraps the freshly initialised head in LoRA, so a random head
is only adapted at low rank: a different experiment, not reproduced by default.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from ttrlab.errors import UserError
from ttrlab.methods.base import METHODS, Method, PreparedModel, count_parameters
from ttrlab.methods.init import INIT_STRATEGIES
from ttrlab.settings import Section, require, setting

# The seed of A's init is derived from the run seed but kept apart from the head's and the
# data order's, so changing one of them does not silently shift the others.
LORA_INIT_SEED_OFFSET = 7_919
# The paper (Section 4.1) gives LoRA "low rank" and "high rank" learning rates without saying
# where high rank starts; rank >= 64 counts as high here.
HIGH_RANK_FROM = 64
PEFT_TASK_TYPES = {"classification": "SEQ_CLS", "generation": "CAUSAL_LM"}


@dataclass
class LoRASettings(Section):
    """LoRA's knobs (ignored by runs of other methods, and not part of their identity)."""

    METHOD_SETTINGS = True

    rank: int = setting(8, "LoRA rank r")
    alpha: float = setting(16.0, "LoRA alpha (scaling s = alpha / r)")
    lora_dropout: float = setting(0.0, "LoRA dropout")
    target_modules: str = setting("query,value", "comma list of module names (default query,value) or all-linear")
    init: str = setting("kaiming_uniform", "LoRA A init: kaiming_uniform | gaussian | xavier_normal")
    init_scale: float | None = setting(None, "variance scale k: Var(A) = k / fan_in (default: the strategy's own)")

    def check(self) -> None:
        INIT_STRATEGIES.get(self.init)
        require(self.rank >= 1, f"rank {self.rank} must be an integer >= 1")
        require(self.alpha > 0, f"alpha {self.alpha} must be > 0")
        require(0.0 <= self.lora_dropout < 1.0, f"lora_dropout {self.lora_dropout} is outside [0, 1)")
        if self.init_scale is not None:
            require(self.init_scale > 0 and math.isfinite(self.init_scale),
                    f"init_scale {self.init_scale} must be a finite number > 0")
        target_module_list(self.target_modules)

    def check_model(self, model_config) -> None:
        """r at most the hidden size: A is r x n, and a rank above n adds nothing but memory."""
        from ttrlab.methods import METHODS
        from ttrlab.models import hidden_size_of

        if METHODS.get(self.method).settings is not LoRASettings:
            return  # another method's run ignores the rank
        hidden = hidden_size_of(model_config)
        require(hidden is None or self.rank <= hidden,
                f"rank {self.rank} exceeds the hidden size {hidden} of model {self.model!r}; allowed: 1 to {hidden}")


def target_module_list(targets: str) -> str | list[str]:
    targets = targets.strip()
    if targets == "all-linear":
        return "all-linear"
    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise UserError(f"target_modules {targets!r} names no module; give e.g. 'query,value' or 'all-linear'")
    return names


def lora_config(settings: LoRASettings, task_type: str):
    from peft import LoraConfig, TaskType

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=target_module_list(settings.target_modules),
        task_type=getattr(TaskType, PEFT_TASK_TYPES[task_type]),
        init_lora_weights=True,  # B = 0; A is overwritten below
    )


def apply_lora_init(model, init: str, scale: float | None, seed: int, adapter: str = "default") -> dict[str, Any]:
    """Re-draw every A matrix of the LoRA adapter named `adapter` with `init` at Var = k / fan_in,
    in module order, from one generator seeded by `seed`. Returns what was used, for the result
    record (module names as in a model holding this adapter alone, peft's "default")."""
    import torch

    strategy = INIT_STRATEGIES.get(init)
    generator = torch.Generator().manual_seed(seed + LORA_INIT_SEED_OFFSET)
    variances = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(f"lora_A.{adapter}") and isinstance(module, torch.nn.Linear):
                variances[name] = strategy.fill_(module.weight, scale, generator)
    if not variances:
        raise RuntimeError("no LoRA A matrix found to initialise")
    some = next(iter(variances))
    rank, fan_in = model.get_submodule(some).weight.shape
    return {
        "init": init,
        "init_scale": strategy.scale(fan_in, rank, scale),
        "init_variance_example": {"module": some.removesuffix(adapter) + "default", "fan_in": fan_in,
                                  "variance": variances[some]},
        "lora_modules": len(variances),
    }


def init_details(model, settings: LoRASettings, seed: int, adapter: str = "default") -> dict[str, Any]:
    """Draw the adapter's A matrices (`apply_lora_init`) and return the method record's details."""
    details = apply_lora_init(model, settings.init, settings.init_scale, seed, adapter)
    details["lora_scaling"] = settings.alpha / settings.rank  # peft's s = α/r on B·A
    return details


class LowRankAdaptation(Method):
    name = "lora"
    label = "LoRA"
    summary = "LoRA (peft): low-rank A, B on the target modules, head trained fully"
    settings = LoRASettings
    trains_fused = True

    def prepare(self, model, config):
        from peft import get_peft_model

        settings = LoRASettings.of(config)
        try:
            with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                peft_model = get_peft_model(model, lora_config(settings, config.TASK_TYPE))
        except ValueError as error:  # peft: target modules not found in the model
            raise UserError(f"target_modules {settings.target_modules!r}: {str(error).splitlines()[0]}") from None
        details = init_details(peft_model, settings, config.seed)
        trainable, total = count_parameters(peft_model)
        return PreparedModel(peft_model, trainable, total, details)

    def preset_learning_rate(self, preset, config):
        return preset.adapter_low_rank if config.rank < HIGH_RANK_FROM else preset.adapter_high_rank

    def settings_label(self, values) -> str:
        parts = [f"r={values.get('rank')}"]
        if values.get("init") not in (None, "kaiming_uniform"):
            parts.append(str(values["init"]))
        if values.get("init_scale") is not None:
            parts.append(f"k={values['init_scale']:g}")
        return " ".join(parts)

    def describe(self, values) -> str:
        text = f"LoRA r={values.get('rank')}, α={values.get('alpha'):g}"
        init, k = values.get("init", "kaiming_uniform"), values.get("init_scale")
        if init != "kaiming_uniform" or k is not None:
            text += f", {init}" + (f" k={k:g}" if k is not None else "")
        return text


METHODS.register("lora")(LowRankAdaptation())
