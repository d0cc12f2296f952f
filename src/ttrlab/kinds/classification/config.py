"""RunConfig: everything one classification run (run kind "train") depends on. A run is a pure
function of this value.

It is composed of the sections each part of ttrlab owns (see `ttrlab.core.settings`): the model,
device and precision (`runtime.ModelSettings`), the task and its data (`data.settings`), the
attack (`attacks.AttackSettings`), every method's own knobs (LoRA's in `methods.lora`), the
optimisation (`training.OptimSettings`), the learning curve (`curves.CurveSettings`), the defense
(`defenses.DefenseSettings`), where the poison enters (`threats.ThreatSettings`) and the method and
seed (`settings.RunSettings`).
`RunConfig.from_dict` rejects unknown keys ("did you mean") and wrong types, `validate()` lets
every section check its values, and `run_key()` is the stable hash by which the results
database recognises a run it has already done.
"""
from __future__ import annotations

from dataclasses import dataclass

from ttrlab.attacks import AttackSettings
from ttrlab.training.settings import CurveSettings
from ttrlab.data.settings import ClassificationData
from ttrlab.defenses.base import DefenseSettings
from ttrlab.methods import method_settings
from ttrlab.models.runtime import ModelSettings
from ttrlab.methods.choice import MethodChoice
from ttrlab.core.settings import RunSettings
from ttrlab.training.settings import LR_PRESETS, OptimSettings
from ttrlab.threats import ThreatSettings


@dataclass
class RunConfig(ModelSettings, ClassificationData, AttackSettings, *method_settings(), OptimSettings, CurveSettings,
                DefenseSettings, ThreatSettings, MethodChoice, RunSettings):
    """One fine-tuning run of a sequence classifier on a GLUE-style task under an attack."""

    KIND = "train"
    TASK_TYPE = "classification"


def preset_learning_rate(preset: str, method: str, rank: int = 8) -> float:
    """The learning rate a preset gives a method (LoRA: by rank)."""
    return RunConfig(method=method, rank=rank, lr_preset=preset).learning_rate()


def paper_learning_rate(method: str, rank: int = 8) -> float:
    """The paper's learning-rate rule (Section 4.1)."""
    return preset_learning_rate("paper", method, rank)


__all__ = ["RunConfig", "LR_PRESETS", "preset_learning_rate", "paper_learning_rate"]
