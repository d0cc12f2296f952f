"""The theory kind's config: a classification run's settings (model, method, init, attack, data)
plus what to compute at initialisation (`TheorySettings`). Read without torch: a spec's dry run
and `ttrlab theory --help` need only this."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttrlab.attacks import AttackSettings
from ttrlab.methods.choice import MethodChoice
from ttrlab.core.settings import RunSettings, Section, require, setting
from ttrlab.data.settings import ClassificationData
from ttrlab.methods import method_settings
from ttrlab.models.runtime import ModelSettings
from ttrlab.theory.information import DEFAULT_RELATIVE_EPS
from ttrlab.training.settings import OptimSettings

QUANTITIES = ("all", "ntk", "fisher", "spectrum")


@dataclass
class TheorySettings(Section):
    """What to compute at θ₀, and with how much memory."""

    quantity: str = setting("all", "all | ntk | fisher (need the model) | spectrum (Thm 3.4 / Eq. 18 only)")
    n: int = setting(64, "number of samples")
    max_jacobian_mb: int = setting(1024, "memory budget of one Jacobian chunk or one layer-wise pass")
    relative_eps: float = setting(DEFAULT_RELATIVE_EPS, "eigenvalues <= eps * lambda_max count as zero")
    keep_kernels: bool = setting(False, "put the full N·O × N·O kernel into the result")
    fan_in: int | None = setting(None, "spectrum: n of A in R^{r x n} (default: the model's hidden size)")

    def check(self) -> None:
        require(self.quantity in QUANTITIES, f"unknown theory quantity {self.quantity!r}; allowed: {', '.join(QUANTITIES)}")
        require(self.n >= 2, f"n {self.n} must be >= 2")
        require(self.max_jacobian_mb >= 1, f"max_jacobian_mb {self.max_jacobian_mb} must be >= 1")
        require(self.fan_in is None or self.fan_in >= 1, f"fan_in {self.fan_in} must be >= 1")
        require(0.0 <= self.relative_eps < 1.0, f"relative_eps {self.relative_eps} must be in [0, 1)")

    def identity(self, values: dict[str, Any]) -> None:
        values.pop("keep_kernels", None)  # what is kept, not what is computed
        values.pop("max_jacobian_mb", None)  # memory budget: same numbers
        if self.quantity != "spectrum":
            values.pop("fan_in", None)


# Settings of the training runs a theory run stands beside, accepted (a training spec's base can
# be reused as is) but not part of a theory run's identity: they do not shape θ₀ or the sample.
TRAINING_ONLY = (*OptimSettings.field_names(), "eval_size", "eval_batch_size")


@dataclass
class TheoryConfig(ModelSettings, ClassificationData, AttackSettings, *method_settings(), OptimSettings, TheorySettings,
                   MethodChoice, RunSettings):
    """A classification run's settings (what model, method, init, attack, data) plus what to compute."""

    KIND = "theory"
    KEY_PREFIX = {"kind": "theory"}
    TASK_TYPE = "classification"
    TRAINS = False

    def identity(self, values: dict[str, Any]) -> None:
        for name in TRAINING_ONLY:
            values.pop(name, None)

    def check(self) -> None:
        from ttrlab.methods import METHODS
        from ttrlab.methods.lora import LoRASettings

        method = METHODS.get(self.method)
        require(self.KIND in method.kinds, f"method {self.method!r} does not apply to theory runs; allowed: "
                f"{', '.join(n for n in METHODS if self.KIND in METHODS.get(n).kinds)}")
        # the spectrum is that of ttrlab's A init (PiSSA and OLoRA derive A from W instead)
        require(self.quantity != "spectrum" or (method.settings is LoRASettings and getattr(method, "ttrlab_a_init", False)),
                f"quantity 'spectrum' is about LoRA's A; got method {self.method!r} (use --method lora)")
        if self.quantity == "spectrum" and self.fan_in is not None:  # A is r x n
            require(self.rank <= self.fan_in, f"rank {self.rank} exceeds fan_in {self.fan_in}; allowed: 1 to {self.fan_in}")

    def needs_model(self) -> bool:
        return self.quantity != "spectrum"  # the AᵀA spectrum is computed from the config alone
