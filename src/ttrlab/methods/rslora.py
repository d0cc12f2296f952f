"""rsLoRA (Kalajdzievski 2023) through peft's `use_rslora=True`: the adapter is scaled by
α/√r instead of α/r, so its update does not shrink as the rank grows. A keeps ttrlab's init."""
import math

from ttrlab.methods.base import METHODS
from ttrlab.methods.lora import LowRankAdaptation


class RankStabilizedLoRA(LowRankAdaptation):
    name = "rslora"
    label = "rsLoRA"
    summary = "rsLoRA (peft use_rslora): LoRA scaled by alpha/sqrt(r)"
    trains_fused = False
    peft_options = {"use_rslora": True}

    def lora_scaling(self, settings) -> float:
        return settings.alpha / math.sqrt(settings.rank)


METHODS.register("rslora")(RankStabilizedLoRA())
