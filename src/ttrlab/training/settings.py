"""The training settings every run kind shares, apart from the loop so that reading a config (a
spec's dry run, `ttrlab --help`) needs no torch: the optimiser (`OptimSettings`), the
learning-rate presets a method picks its rate from (`LR_PRESETS`), and the learning curve and
checkpoints (`CurveSettings`; the loop and the checkpoints themselves: `training.loop`,
`training.curves`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttrlab.core.errors import did_you_mean
from ttrlab.core.registry import Registry
from ttrlab.core.settings import Section, require, setting


@dataclass(frozen=True)
class LearningRatePreset:
    """A learning-rate rule: which rate applies is the method's decision (`Method.preset_learning_rate`)."""

    name: str
    adapter_low_rank: float  # e.g. LoRA with r below its high-rank threshold
    adapter_high_rank: float
    full: float  # full fine-tuning
    source: str
    made_for_steps: int | None = None  # the run length the rates were chosen for (None: not said)


LR_PRESETS: Registry[LearningRatePreset] = Registry("lr_preset")
for _preset in (
    LearningRatePreset("paper", 3e-5, 3e-6, 3e-6,
                       'Section 4.1: "3e-5 for LoRA\'s low rank fine-tuning and 3e-6 for both LoRA\'s high rank fine-tuning '
                       'and FF", for BERT-large over 10,000 steps', made_for_steps=10_000),
    LearningRatePreset("cpu", 1e-3, 1e-4, 5e-5,
                       "the paper's rule rescaled for MiniLM with a few hundred steps on 2 cores, where the paper's rates "
                       "barely move the model; SST-2, 2,000 examples, 300 steps, seed 0: FF 5e-5 -> 83% dev accuracy, "
                       "LoRA r=8 1e-3 -> 82%", made_for_steps=300),
    LearningRatePreset("backdoorllm", 2e-4, 2e-4, 2e-5,
                       "generative runs: BackdoorLLM's LoRA jailbreak recipe (2e-4); 2e-5, the usual rate for full SFT of "
                       "a 1-8B chat model (the paper, Appendix E.3, gives neither)"),
):
    LR_PRESETS.register(_preset.name)(_preset)


@dataclass
class OptimSettings(Section):
    """AdamW with linear warm-up and decay, gradient clipping, `max_steps` optimizer steps."""

    lr: float | None = setting(None, "learning rate (default: the preset's rule)")
    lr_preset: str = setting("paper", "paper (3e-5 LoRA r<64, 3e-6 FF and r>=64) | cpu | backdoorllm")
    batch_size: int = setting(8, "training batch size")
    max_steps: int = setting(500, "optimizer steps")
    warmup_ratio: float = setting(0.06, "share of steps with linear warm-up")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    max_grad_norm: float = setting(1.0, "gradient clipping norm")
    length_bucketing: bool = setting(True, "group examples of similar length into batches")

    def learning_rate(self) -> float:
        """`lr`, else the rate the preset gives this run's method (the config's `method`)."""
        if self.lr is not None:
            return self.lr
        from ttrlab.methods import METHODS

        return METHODS.get(self.method).preset_learning_rate(LR_PRESETS.get(self.lr_preset), self)

    def check(self) -> None:
        require(self.lr_preset in LR_PRESETS,
                f"lr_preset {self.lr_preset!r} is not one of {', '.join(LR_PRESETS.registered())}"
                f"{did_you_mean(self.lr_preset, LR_PRESETS.registered())}")
        require(self.lr is None or self.lr > 0, f"lr {self.lr} must be > 0")
        require(self.batch_size >= 1, f"batch_size {self.batch_size} must be >= 1")
        require(self.max_steps >= 0, f"max_steps {self.max_steps} must be >= 0")
        require(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio {self.warmup_ratio} is outside [0, 1)")
        require(self.weight_decay >= 0, f"weight_decay {self.weight_decay} must be >= 0")
        require(self.max_grad_norm > 0, f"max_grad_norm {self.max_grad_norm} must be > 0")

    def resolve(self, values: dict[str, Any]) -> None:
        values["lr"] = self.learning_rate()

    def identity(self, values: dict[str, Any]) -> None:
        values.pop("lr_preset", None)  # only the resolved rate matters


@dataclass
class CurveSettings(Section):
    """Checkpoint evaluations during training."""

    curve_every: int = setting(0, "evaluate every this many steps during training, for the learning curve (0 = no curve)")
    curve_size: int = setting(40, "examples (or prompts) evaluated at each checkpoint: the first of the scored ones")
    checkpoint_dir: str | None = setting(None, "save the training state at every checkpoint under this folder and "
                                               "resume a restarted run from the last one (needs curve_every)")

    def check(self) -> None:
        require(self.curve_every >= 0, f"curve_every {self.curve_every} must be >= 0")
        require(self.curve_size >= 1, f"curve_size {self.curve_size} must be >= 1")
        require(self.checkpoint_dir is None or self.curve_every > 0,
                f"checkpoint_dir {self.checkpoint_dir!r} needs curve_every > 0 (the steps at which the state is saved)")

    def identity(self, values: dict[str, Any]) -> None:
        values.pop("checkpoint_dir", None)  # where the state is kept does not change the run
        if not self.curve_every:  # no curve: the size does not change the run (and old keys stay)
            values.pop("curve_every", None)
            values.pop("curve_size", None)
