"""OLoRA (Büyükakyüz 2024) through peft's `init_lora_weights="olora"`: A and B start from the QR
decomposition of W (orthonormal B), W keeps the residual. ttrlab's A init does not apply."""
from ttrlab.methods.base import METHODS
from ttrlab.methods.lora import LowRankAdaptation


class OrthonormalLoRA(LowRankAdaptation):
    name = "olora"
    label = "OLoRA"
    summary = "OLoRA (peft init olora): A, B from a QR decomposition of W, W keeps the residual"
    trains_fused = False
    peft_options = {"init_lora_weights": "olora"}
    ttrlab_a_init = False


METHODS.register("olora")(OrthonormalLoRA())
