"""PiSSA (Meng et al. 2024) through peft's `init_lora_weights="pissa"`: A and B start as the top-r
singular directions of W (scaled by √S), and W keeps only the residual, so the model's output at
step 0 is unchanged. ttrlab's A init does not apply (LoRASettings refuses init / init_scale).
peft's fast SVD ("pissa_niter_4", 4 subspace iterations): its random start comes from the run seed
(`lora.wrap`), so the init is deterministic; an exact SVD costs seconds per model under CPU load."""
from ttrlab.methods.base import METHODS
from ttrlab.methods.lora import LowRankAdaptation


class PrincipalSingularLoRA(LowRankAdaptation):
    name = "pissa"
    label = "PiSSA"
    summary = "PiSSA (peft init pissa): A, B from W's top-r singular vectors, W keeps the residual"
    trains_fused = False
    peft_options = {"init_lora_weights": "pissa_niter_4"}
    ttrlab_a_init = False


METHODS.register("pissa")(PrincipalSingularLoRA())
