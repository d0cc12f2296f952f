"""DoRA (Liu et al. 2024) through peft's `use_dora=True`: the adapted weight is split into a
trained magnitude vector per output (initialised to ‖W‖ column norms) and a LoRA-adapted
direction. A keeps ttrlab's init; with B = 0 the magnitudes are those of W whatever A is."""
from ttrlab.methods.base import METHODS
from ttrlab.methods.lora import LowRankAdaptation


class WeightDecomposedLoRA(LowRankAdaptation):
    name = "dora"
    label = "DoRA"
    summary = "DoRA (peft use_dora): LoRA direction + trained magnitude vector per adapted module"
    trains_fused = False
    peft_options = {"use_dora": True}


METHODS.register("dora")(WeightDecomposedLoRA())
