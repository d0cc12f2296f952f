"""LoRA-FA (the paper's Appendix C): LoRA with A frozen at ttrlab's variance-scaled init; only B
and the classification head train. peft builds the adapter; freezing A is all this adds."""
from ttrlab.methods.base import METHODS
from ttrlab.methods.lora import LowRankAdaptation


class FrozenALoRA(LowRankAdaptation):
    name = "lora_fa"
    label = "LoRA-FA"
    summary = "LoRA-FA: LoRA with A frozen at its init, only B (and the head) trained"
    trains_fused = False  # only plain LoRA routes per row in a fused group

    def adjust(self, peft_model, details):
        frozen = 0
        for name, parameter in peft_model.named_parameters():
            if ".lora_A." in name:
                parameter.requires_grad_(False)
                frozen += parameter.numel()
        details["frozen_lora_a_parameters"] = frozen


METHODS.register("lora_fa")(FrozenALoRA())
