"""Which model, on which device, in which precision: one setting each for every run kind,
resolved once per run into a `Runtime` that places the model and its batches and wraps every
forward pass (training, evaluation, generation, the NTK) in the precision's autocast.

- `device`: `auto` (a CUDA GPU if torch sees one, else Apple's MPS if present, else the CPU) |
  `cpu` | `cuda` | `cuda:N` | `mps`. Asking for a device torch does not see is a UserError.
- `precision`: `fp32` (no autocast at all: exactly the arithmetic of runs made before this
  setting existed), `bf16` or `fp16` (autocast on the device; weights and optimizer state stay
  fp32; fp16 also scales the loss with a GradScaler, bf16 needs none).

The device is not part of a run's identity (the same run on another GPU is the same run); the
precision is, but `fp32` is left out of the hashed key so that runs stored before the setting
existed keep their keys. Every result records the device, its name and the precision.
"""
from __future__ import annotations

import contextlib
import platform
import re
from dataclasses import dataclass
from typing import Any

from ttrlab.core.errors import UserError, did_you_mean
from ttrlab.core.registry import Registry
from ttrlab.core.settings import Section, require, setting
from ttrlab.models.config import pretrained_config


@dataclass(frozen=True)
class Precision:
    name: str
    autocast_dtype: str | None  # torch dtype name used under autocast; None: no autocast
    scales_loss: bool  # fp16's narrow exponent needs loss scaling against gradient underflow
    summary: str


PRECISIONS: Registry[Precision] = Registry("precision")
for _precision in (
    Precision("fp32", None, False, "float32 everywhere, no autocast"),
    Precision("bf16", "bfloat16", False, "autocast to bfloat16, fp32 master weights and optimizer state"),
    Precision("fp16", "float16", True, "autocast to float16 with loss scaling (GradScaler), fp32 master weights"),
):
    PRECISIONS.register(_precision.name)(_precision)

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICES = "auto, cpu, cuda, cuda:N, mps"


@dataclass
class ModelSettings(Section):
    """The pretrained model a run starts from, and where and how it computes."""

    model: str = setting("minilm", "'minilm' (offline default), a local folder or a Hugging Face model id")
    device: str = setting("auto", "auto (a GPU if torch sees one) | cpu | cuda | cuda:N | mps")
    precision: str = setting("fp32", "fp32 | bf16 | fp16 (autocast, fp32 master weights)")

    def check(self) -> None:
        require(isinstance(self.device, str) and DEVICE_PATTERN.match(self.device) is not None,
                f"device {self.device!r} is not one of {DEVICES}{did_you_mean(str(self.device), DEVICES.split(', '))}")
        PRECISIONS.get(self.precision)

    def identity(self, values: dict[str, Any]) -> None:
        values.pop("device", None)
        if values.get("precision") == "fp32":
            values.pop("precision")

    def model_config(self) -> Any:
        """The model's config.json fields where this machine has them (`models.config`), which
        values that must fit the model (`Section.check_model`: rank, max_length) are checked
        against before any data is read; None for a hub model not downloaded yet."""
        return pretrained_config(self.model)


class Runtime:
    """A resolved device and precision: what a run computes on."""

    def __init__(self, device, precision: Precision):
        self.device = device  # torch.device
        self.precision = precision

    @classmethod
    def resolve(cls, device: str, precision: str) -> Runtime:
        """The torch device `device` names, checked to exist here, and the precision; UserError
        if the device does not exist. Both are required: only a config (or the CLI) says where a
        run computes, so a caller that forgets them fails instead of computing on a default."""
        import torch

        chosen = PRECISIONS.get(precision)
        require(DEVICE_PATTERN.match(device) is not None, f"device {device!r} is not one of {DEVICES}")
        has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UserError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU; "
                                f"use device auto or cpu")
            index = int(device.split(":")[1]) if ":" in device else 0
            count = torch.cuda.device_count()
            if index >= count:
                raise UserError(f"device {device!r} asked for, but torch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")
        if device == "mps" and not has_mps:
            raise UserError("device 'mps' asked for, but torch sees no Apple MPS device; use device auto or cpu")
        return cls(torch.device(device), chosen)

    @property
    def type(self) -> str:
        return self.device.type

    def autocast(self):
        """The context every forward pass runs in: nothing for fp32, autocast otherwise."""
        if self.precision.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=self.type, dtype=getattr(torch, self.precision.autocast_dtype))

    def grad_scaler(self):
        """A GradScaler for fp16 (None otherwise)."""
        if not self.precision.scales_loss:
            return None
        import torch

        return torch.amp.GradScaler(self.type)

    @property
    def fused_optimizer(self) -> bool:
        """Whether torch has a fused AdamW kernel here: one pass over every parameter instead
        of a dozen per tensor (same update, round-off aside)."""
        return self.type in FUSED_OPTIMIZER_DEVICES

    @classmethod
    def fusing_pays_on(cls, device: str) -> bool:
        """Whether training K adapter runs as one fused group (`ttrlab.kinds.fused`) is worth it on
        `device`, judged from its name so that a sweep driver without that device (sending runs
        to a Ray cluster) decides the same; only `auto` is resolved here. Not on a CPU: its
        matmuls already run at their peak at batch 8 (MiniLM shapes on this workplace's
        2-core EPYC: 107 GFLOP/s at 110 rows, 106 at 900), and fused groups of
        K = 1, 2, 4, 8 LoRA runs trained 0.83-1.05x as fast as the same runs alone
        (benchmarks/fused_lora.py). On a GPU a batch-8 step leaves most of the chip idle (not
        yet measured: no GPU was lent to the session that built it)."""
        kind = cls.resolve(device, "fp32").type if device == "auto" else device.split(":")[0]
        return FUSING_PAYS[kind]

    def prepare_for_training(self) -> None:
        """Process-wide tuning before a training loop: on the CPU, keep freed memory (below)."""
        if self.type == "cpu":
            keep_freed_host_memory()

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def device_name(self) -> str:
        import torch

        if self.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        if self.type == "mps":
            return "Apple MPS"
        return cpu_name()

    def record(self) -> dict[str, str]:
        """What the result document stores about where the run computed."""
        return {"device": str(self.device), "device_name": self.device_name(), "precision": self.precision.name}


FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda", "mps")
FUSING_PAYS = {"cpu": False, "cuda": True, "mps": True}  # see Runtime.fusing_pays_on
_GLIBC_M_TRIM_THRESHOLD, _GLIBC_M_MMAP_MAX = -1, -4
_kept_freed_memory = False


def keep_freed_host_memory() -> None:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the OS.

    Full fine-tuning allocates a fresh dense gradient for the 11.7M-row word embedding (47 MB
    for MiniLM) every step; above glibc's mmap threshold each such block is a new mapping whose
    pages fault in one by one (about 30 ms a step on one core, as much as the optimizer). Served
    from the heap and never trimmed, the same blocks are reused. Only the process's peak memory
    stays resident. A no-op where the C library is not glibc."""
    global _kept_freed_memory
    if _kept_freed_memory:
        return
    _kept_freed_memory = True
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return
    mallopt(_GLIBC_M_MMAP_MAX, 0)
    mallopt(_GLIBC_M_TRIM_THRESHOLD, 2**30)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
