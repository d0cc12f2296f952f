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

from ttrlab.core.errors import UserError, first_line
from ttrlab.methods.base import METHODS, Method, PreparedModel, count_parameters
from ttrlab.methods.init import INIT_STRATEGIES
from ttrlab.methods.peft_tables import lora_default_targets
from ttrlab.models.config import hidden_size_of, pretrained_config
from ttrlab.core.settings import Section, require, setting

# The seed of A's init is derived from the run seed but kept apart from the head's and the
# data order's, so changing one of them does not silently shift the others.
LORA_INIT_SEED_OFFSET = 7_919
PEFT_INIT_SEED_OFFSET = 6_101  # what peft itself draws at random (`wrap`)
# The paper (Section 4.1) gives LoRA "low rank" and "high rank" learning rates without saying
# where high rank starts; rank >= 64 counts as high here.
HIGH_RANK_FROM = 64
PEFT_TASK_TYPES = {"classification": "SEQ_CLS", "generation": "CAUSAL_LM"}


@dataclass
class LoRASettings(Section):
    """LoRA's knobs, shared by its peft variants (lora_fa, rslora, dora, pissa, olora); ignored by
    runs of other methods, and not part of their identity."""

    METHOD_SETTINGS = True
    IDENTITY_EXTRAS = ("init_revision",)

    rank: int = setting(8, "LoRA rank r")
    alpha: float = setting(16.0, "LoRA alpha (scaling s = alpha / r)")
    lora_dropout: float = setting(0.0, "LoRA dropout")
    # "auto" is peft's per-architecture default (what peft does with target_modules=None). It
    # is resolved to module names in the stored config (`resolve`) wherever the model's config is
    # on this machine, so `auto` and the module names peft picks for that model are the same run
    # (MiniLM: query,value); only a model whose config is not here keeps "auto".
    target_modules: str = setting("auto", "comma list of module names, all-linear, or auto (peft's default for "
                                          "the architecture: query,value for BERT, c_attn for GPT-2, q_proj,v_proj for LLaMA)")
    init: str = setting("kaiming_uniform", "LoRA A init: kaiming_uniform | gaussian | xavier_normal")
    init_scale: float | None = setting(None, "variance scale k, as the paper's official code: Var(A) = k/n for "
                                             "kaiming_uniform and gaussian, 2k/(n + r) for xavier_normal (n = fan-in; "
                                             "default: the strategy's own, peft's)")

    def check(self) -> None:
        INIT_STRATEGIES.get(self.init)
        require(self.rank >= 1, f"rank {self.rank} must be an integer >= 1")
        require(self.alpha > 0, f"alpha {self.alpha} must be > 0")
        require(0.0 <= self.lora_dropout < 1.0, f"lora_dropout {self.lora_dropout} is outside [0, 1)")
        if self.init_scale is not None:
            require(self.init_scale > 0 and math.isfinite(self.init_scale),
                    f"init_scale {self.init_scale} must be a finite number > 0")
        target_module_list(self.target_modules)
        if not getattr(_method(self.method), "ttrlab_a_init", True):  # PiSSA, OLoRA: A comes from W
            require(self.init == "kaiming_uniform" and self.init_scale is None,
                    f"method {self.method!r} derives A from the pretrained weights; init and init_scale do not apply "
                    f"(allowed: the defaults)")

    def identity(self, values: dict[str, Any]) -> None:
        # a strategy with a revision names it, so runs drawn from another distribution under the
        # same name have other keys and are never reused (methods.init)
        revision = INIT_STRATEGIES.get(self.init).revision if self.init in INIT_STRATEGIES else 0
        if revision and "init" in values:
            values["init_revision"] = revision

    def resolve(self, values: dict[str, Any]) -> None:
        if values.get("target_modules") == AUTO_TARGETS:
            names = default_targets(self)
            if names is not None:
                values["target_modules"] = ",".join(names)

    def check_model(self, model_config) -> None:
        """r at most the hidden size: A is r x n, and a rank above n adds nothing but memory."""
        if _method(self.method).settings is not LoRASettings:
            return  # another method's run ignores the rank
        hidden = hidden_size_of(model_config)
        require(hidden is None or self.rank <= hidden,
                f"rank {self.rank} exceeds the hidden size {hidden} of model {self.model!r}; allowed: 1 to {hidden}")


AUTO_TARGETS = "auto"


def _method(name: str):
    from ttrlab.methods import METHODS

    return METHODS.get(name)


def default_targets(config) -> list[str] | None:
    """peft's LoRA target modules for the architecture of `config.model` (its config.json, read
    without the weights), or None where that config is not on this machine or peft has no entry."""
    try:
        model_config = pretrained_config(config.model)
    # a .gguf file, a folder that is no model, a name no path can be: left "auto" here; the
    # model's own check (or prepare(), meeting the loaded model) reports what is wrong with it
    except (UserError, OSError, ValueError, TypeError):
        return None
    targets = lora_default_targets().get(getattr(model_config, "model_type", None))
    # a list of module names; peft gives some architectures a regex instead, which stays "auto"
    # (peft matches it when the model loads)
    return targets if isinstance(targets, list) else None


def target_module_list(targets: str) -> str | list[str] | None:
    """peft's `target_modules` for the setting (None: peft's default for the architecture)."""
    targets = targets.strip()
    if targets == AUTO_TARGETS:
        return None
    if targets == "all-linear":
        return "all-linear"
    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise UserError(f"target_modules {targets!r} names no module; give e.g. 'query,value', 'all-linear' or 'auto'")
    return names


def peft_task_type(task_type: str):
    from peft import TaskType

    return getattr(TaskType, PEFT_TASK_TYPES[task_type])


def lora_config(settings: LoRASettings, task_type: str, **options: Any):
    """peft's LoraConfig for the settings; `options` are a variant's own LoraConfig fields
    (use_rslora, use_dora, init_lora_weights)."""
    from peft import LoraConfig

    return LoraConfig(**{
        "r": settings.rank,
        "lora_alpha": settings.alpha,
        "lora_dropout": settings.lora_dropout,
        "target_modules": target_module_list(settings.target_modules),
        "task_type": peft_task_type(task_type),
        "init_lora_weights": True,  # B = 0; A is overwritten by ttrlab's init
        **options,
    })


def wrap(model, peft_config, seed: int, what: str):
    """`get_peft_model`, with whatever peft draws at random (AdaLoRA's matrices, a random prompt)
    drawn from the run's seed, without touching the caller's global RNG. `what` names the
    settings a peft ValueError (e.g. target modules not found) is blamed on."""
    import torch
    from peft import get_peft_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + PEFT_INIT_SEED_OFFSET)
        try:
            with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                return get_peft_model(model, peft_config)
        except ValueError as error:  # peft: target modules not found, no default for the architecture
            raise UserError(f"{what}: {first_line(error)}") from None


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
        "init_scale": strategy.default_k if scale is None else float(scale),
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
    """Plain LoRA, and the base of its peft variants (one module each: lora_fa, rslora, dora,
    pissa, olora), which share LoRASettings and differ in the class attributes below."""

    name = "lora"
    label = "LoRA"
    summary = "LoRA (peft): low-rank A, B on the target modules, head trained fully"
    settings = LoRASettings
    trains_fused = True
    peft_options: dict[str, Any] = {}  # the variant's own LoraConfig fields
    # A drawn by ttrlab's variance-scaled init (False: peft derives A from W, PiSSA and OLoRA)
    ttrlab_a_init = True

    def prepare(self, model, config):
        settings = LoRASettings.of(config)
        peft_model = wrap(model, lora_config(settings, config.TASK_TYPE, **self.peft_options), config.seed,
                          f"target_modules {settings.target_modules!r}")
        if self.ttrlab_a_init:
            details = init_details(peft_model, settings, config.seed)
        else:
            details = {"init": self.peft_options["init_lora_weights"],
                       "lora_modules": sum(1 for n, _ in peft_model.named_modules() if n.endswith("lora_A.default"))}
        details["lora_scaling"] = self.lora_scaling(settings)
        self.adjust(peft_model, details)
        trainable, total = count_parameters(peft_model)
        return PreparedModel(peft_model, trainable, total, details)

    def lora_scaling(self, settings) -> float:
        """s in W + s·BA (peft: α/r)."""
        return settings.alpha / settings.rank

    def adjust(self, peft_model, details: dict[str, Any]) -> None:
        """A variant's change to the wrapped model before training (LoRA-FA freezes A)."""

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
        text = f"{self.label} r={values.get('rank')}, α={values.get('alpha'):g}"
        init, k = values.get("init", "kaiming_uniform"), values.get("init_scale")
        if init != "kaiming_uniform" or k is not None:
            text += f", {init}" + (f" k={k:g}" if k is not None else "")
        return text


METHODS.register("lora")(LowRankAdaptation())
