"""What a threat model is: *where* the attacker's poison enters a fine-tuning run, and so what the
run measures. The field's results disagree in sign depending on where it enters (docs/threats.md):

- `fine_tune_poison`: the fine-tuning data itself is poisoned (the paper; Gu et al. ACL'23);
- `poisoned_base`: the base model was backdoored before the victim's clean fine-tuning (Zhao et
  al. 2024, PETA 2023).

A threat is a registered object (`THREATS`) carrying its own meaning: what it measures, which
settings it reads (`uses`), which runs it refuses and why (`check_run`, one line), whether its
runs may train in a fused group, and which pipeline experiment trains it (`experiment()`). The
rest of ttrlab looks it up by name (`threat` in a spec, `--threat` on `ttrlab train`).

`ThreatSettings` is the config section: the default threat adds nothing to a run's identity, so a
run under it has the key of the same run without threat settings (pinned in tests/test_threats.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ttrlab.core.registry import Registry
from ttrlab.core.settings import Section, require, setting

THREATS: Registry[type["Threat"]] = Registry("threat")
DEFAULT_THREAT = "fine_tune_poison"


@dataclass
class ThreatSettings(Section):
    """Where the poison enters a classification run (`ttrlab threats`)."""

    threat: str = setting(DEFAULT_THREAT, "fine_tune_poison (poisoned fine-tuning data) | poisoned_base "
                                          "(a backdoored base, then clean fine-tuning) (`ttrlab threats`)")
    base_size: int = setting(2000, "poisoned_base: training examples of stage 1 (the attacker's full fine-tune), "
                                   "apart from the stage-2 examples")
    base_steps: int = setting(200, "poisoned_base: optimizer steps of stage 1")
    base_lr: float | None = setting(None, "poisoned_base: learning rate of stage 1 (default: the preset's FF rate)")

    # knob → (check, what is allowed); checked only for the knobs the chosen threat reads
    CHECKS: ClassVar[dict[str, tuple[Any, str]]] = {
        "base_size": (lambda v: v >= 1, "must be >= 1"),
        "base_steps": (lambda v: v >= 1, "must be >= 1"),
        "base_lr": (lambda v: v is None or v > 0, "must be > 0 (or unset: the preset's FF rate)"),
    }

    def check(self) -> None:
        threat = THREATS.get(self.threat)  # unknown: "did you mean"
        for name in threat.uses:
            ok, allowed = ThreatSettings.CHECKS[name]
            value = getattr(self, name)
            require(ok(value), f"{name} {value!r} {allowed}")
        threat.check_run(self)

    def resolve(self, values: dict[str, Any]) -> None:
        THREATS.get(self.threat).resolve(self, values)

    def identity(self, values: dict[str, Any]) -> None:
        # the default threat is the paper's run, identified without any of these keys
        threat = THREATS.get(self.threat)
        for name in ThreatSettings.field_names():
            if threat.name == DEFAULT_THREAT or (name != "threat" and name not in threat.uses):
                values.pop(name, None)


class Threat:
    """Base of every threat model. Subclasses set `name`, `summary`, `measures` (what a run under
    it tells), `stages` (the run's stages, in words), `uses` (the ThreatSettings knobs it reads),
    `trains_fused` and implement `experiment()`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    measures: ClassVar[str]
    stages: ClassVar[str]
    sources: ClassVar[str] = ""
    uses: ClassVar[tuple[str, ...]] = ()
    trains_fused: ClassVar[bool] = True  # may a run under it train in a fused group (one shared base)?

    @classmethod
    def check_run(cls, config) -> None:
        """Raise UserError (one line: the value, why, what is allowed) where the rest of the config
        does not fit this threat model."""

    @classmethod
    def resolve(cls, config, values: dict[str, Any]) -> None:
        """Fill the threat's derived settings into the stored config."""

    @classmethod
    def experiment(cls):
        """The pipeline experiment (`ttrlab.kinds.pipeline.Experiment`) that trains a run under
        this threat; imported on first use (listing threats needs no torch)."""
        raise NotImplementedError


def threat_of(config) -> type[Threat]:
    """The threat model a classification config names (configs of other kinds: the default)."""
    return THREATS.get(getattr(config, "threat", DEFAULT_THREAT))
