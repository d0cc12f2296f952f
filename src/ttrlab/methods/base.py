"""What a fine-tuning method is: a way to decide which parameters of a pretrained model train.

A method declares its own settings (a `Section` the run configs inherit, e.g. LoRA's rank and
alpha; None for full fine-tuning), the task types it can adapt a model for, and which rate of a
learning-rate preset applies to it. The rest of ttrlab asks the method, never its name.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ttrlab.core.registry import Registry

# What a model is adapted for: a sequence classifier (GLUE runs, theory) or a causal LM.
TASK_TYPES = ("classification", "generation")
# The run kinds (`ttrlab.kinds.pipeline.Experiment.name`) a method can serve.
RUN_KINDS = ("train", "generative", "theory")


@dataclass
class PreparedModel:
    model: Any  # torch.nn.Module with exactly the method's parameters trainable
    trainable_parameters: int
    total_parameters: int
    details: dict[str, Any] = field(default_factory=dict)  # method-specific, goes into the result
    # Called by the training loop after every optimizer step with the 0-based index of the step
    # just taken, gradients still present (AdaLoRA re-allocates its rank budget from them).
    after_step: Callable[[int], None] | None = None

    def record(self, name: str) -> dict[str, Any]:
        """The result document's "method" section."""
        return {"name": name, "trainable_parameters": self.trainable_parameters,
                "total_parameters": self.total_parameters, **self.details}


class Method:
    name: ClassVar[str]
    summary: ClassVar[str]
    label: ClassVar[str]  # how tables and figures name it ("FF", "LoRA")
    settings: ClassVar[type | None] = None  # the Section holding this method's knobs
    task_types: ClassVar[tuple[str, ...]] = TASK_TYPES
    kinds: ClassVar[tuple[str, ...]] = RUN_KINDS  # run kinds it serves (prompt tuning: no theory)
    is_full: ClassVar[bool] = False  # trains every parameter: the baseline others are compared with
    # Runs of this method can train as one group over a shared frozen base (`ttrlab.kinds.fused`):
    # only adapters whose layers peft can route per row (a frozen base the runs share).
    trains_fused: ClassVar[bool] = False

    def prepare(self, model, config) -> PreparedModel:
        """Make exactly this method's parameters trainable in `model`, adapted for the config's
        task type (`config.TASK_TYPE`); the method reads its own settings and `seed` from `config`."""
        raise NotImplementedError

    def preset_learning_rate(self, preset, config) -> float:
        """The rate of a `training.LearningRatePreset` that applies to this method."""
        raise NotImplementedError

    def settings_label(self, values) -> str:
        """This method's settings in a few characters (from a flat config mapping), for run labels."""
        return ""

    def describe(self, values) -> str:
        """Short label of this method with its settings (from a flat config mapping), for
        tables and figures."""
        return self.label


METHODS: Registry[Method] = Registry("method")


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def full_method() -> Method:
    """The registered method that trains every parameter (the baseline of comparisons)."""
    full = [METHODS.get(n) for n in METHODS if METHODS.get(n).is_full]
    if len(full) != 1:
        raise RuntimeError(f"exactly one method must train every parameter, found {len(full)}")
    return full[0]
