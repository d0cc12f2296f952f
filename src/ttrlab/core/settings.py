"""Run settings, composed: each concern declares its settings once, as a dataclass *section* in
its own module, and a run kind's config is the dataclass that inherits the sections it needs::

    @dataclass
    class RunConfig(ModelSettings, ClassificationData, AttackSettings, LoRASettings, OptimSettings, RunSettings):
        ...

A config therefore *is* each of its sections: `build_attack(config)` reads the AttackSettings it
inherits, the LoRA method reads `LoRASettings.of(config)`, the optimizer `OptimSettings`. The
field names are flat and unique across sections: they are the spec keys, the CLI flags and the
keys stored in the database (so a stored document is one flat mapping, read the same whichever section owns a key).

A section checks its own values (`check`) and removes from a run's identity what does not
change the run (`identity`); `RunSettings` calls every section in turn. Sections that a method
owns (LoRA's rank, alpha, ...) count in the identity only when that method is the one chosen,
so full fine-tuning expanded over LoRA ranks is one run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from ttrlab.core.errors import UserError, did_you_mean, shown

S = TypeVar("S", bound="Section")


class Section:
    """A group of run settings owned by one part of ttrlab (a dataclass whose fields all have
    defaults). Subclasses override `check` and `identity`; both are called with the whole config
    (which inherits the section), so a rule may read a field of another section."""

    def check(self) -> None:
        """Raise UserError naming the first bad value of this section."""

    def check_model(self, model_config: Any) -> None:
        """Raise UserError where a value does not fit the pretrained model, given its Hugging
        Face config (`hidden_size`, `max_position_embeddings`, ...): LoRA's rank above the hidden
        size, a max_length above the model's positions."""

    def resolve(self, values: dict[str, Any]) -> None:
        """Fill derived values into `values` (the flat config), e.g. a preset's learning rate."""

    def identity(self, values: dict[str, Any]) -> None:
        """Remove from `values` (the flat resolved config) what does not change the run."""

    # keys `identity` may add beyond the fields (a revision marker: methods.init)
    IDENTITY_EXTRAS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def owned_names(cls) -> tuple[str, ...]:
        """The names this section puts into a stored config or a run's identity."""
        return (*cls.field_names(), *cls.IDENTITY_EXTRAS)

    @classmethod
    def of(cls: type[S], config: Any) -> S:
        """This section alone, with the values `config` holds (for code that should see only it)."""
        return cls(**{name: getattr(config, name) for name in cls.field_names()})


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
            flag: str | None = None) -> Any:
    """A section field that carries its own documentation (shown by `--help` and the docs) and,
    where it is not the field name in kebab case, its command-line flag."""
    metadata = {"help": help, **({"flag": flag} if flag else {})}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(spec: dataclasses.Field) -> str:
    return spec.metadata.get("help", "")


def require(ok: bool, message: str) -> None:
    """The one-line check every section uses: raise UserError(message) unless `ok`."""
    if not ok:
        raise UserError(message)


C = TypeVar("C", bound="RunSettings")


@dataclass
class RunSettings(Section):
    """What every run kind has: the seed of every random choice. The base of each kind's config;
    it knows how to build, validate and identify a composed config (the method a run uses is a
    section of its own: `methods.choice.MethodChoice`)."""

    seed: int = setting(0, "seed of every random choice in the run")

    KIND: ClassVar[str] = ""  # the run kind this config is for
    # Prefix of the hashed identity. The classification kind had none before kinds existed and
    # keeps none, so its stored runs keep their keys.
    KEY_PREFIX: ClassVar[dict[str, str]] = {}
    TASK_TYPE: ClassVar[str] = ""  # what a method adapts the model for (see methods.base)
    TRAINS: ClassVar[bool] = True  # False: computed at initialisation, no optimize step (theory)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """A config from flat keys (a spec point, CLI flags, a stored config): unknown keys get a
        "did you mean", wrong types a one-line error."""
        known = {f.name: f for f in fields(cls)}
        for key in values:
            if key not in known:
                raise UserError(
                    f"unknown config key {shown(key)}{did_you_mean(key, known)} for a {cls.KIND or 'run'} run; "
                    f"allowed: {', '.join(known)}"
                )
        return cls(**{k: coerce(known[k], v) for k, v in values.items()})

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ---- the sections ---------------------------------------------------------------------
    @classmethod
    def sections(cls) -> list[type[Section]]:
        """The sections this config is made of, most general first."""
        return [c for c in reversed(cls.__mro__) if issubclass(c, Section) and c is not Section]

    def check(self) -> None:
        require(isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED, f"seed {self.seed} must be in [0, {MAX_SEED}]")

    @classmethod
    def load(cls: type[C], values: dict[str, Any]) -> C:
        """A validated config from flat keys: every section's check, then, where the run needs a
        model and this machine knows its config without loading it, the fit to that model."""
        config = cls.from_dict(values).validate()
        return config.check_model_fit(config.model_config()) if config.needs_model() else config

    def needs_model(self) -> bool:
        """False for a run computed from the config alone (theory's AᵀA spectrum)."""
        return True

    def model_config(self) -> Any:
        """The pretrained model's config fields, where known without loading the weights (the
        model's section says: `models.runtime.ModelSettings`); None here."""
        return None

    def validate(self: C) -> C:
        """Every section checks its values; returns self so calls chain."""
        for section in type(self).sections():
            if "check" in section.__dict__:
                section.check(self)
        return self

    def check_model_fit(self: C, model_config: Any) -> C:
        """Every section checks its values against the model (`Section.check_model`); a no-op
        where the model's config is not known (None: a hub model not on this machine yet)."""
        if model_config is not None:
            for section in type(self).sections():
                if "check_model" in section.__dict__:
                    section.check_model(self, model_config)
        return self

    # ---- identity -------------------------------------------------------------------------
    def resolved(self) -> dict[str, Any]:
        """The flat config as the run uses it (derived values filled in, e.g. the learning rate
        of a preset); what the result document stores."""
        values = self.to_dict()
        for section in type(self).sections():
            if "resolve" in section.__dict__:
                section.resolve(self, values)
        return values

    def identity_values(self) -> dict[str, Any]:
        """The resolved config without what does not change the run (each section decides)."""
        values = self.resolved()
        for section in type(self).sections():
            if "identity" in section.__dict__:
                section.identity(self, values)
        return values

    def run_key(self) -> str:
        """Hash of everything that changes the run (seed included): the identity of a run, by
        which the results database recognises a run it has already done."""
        blob = json.dumps({**self.KEY_PREFIX, **self.identity_values()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}
# Every integer setting fits a signed 64-bit integer (what torch and numpy take); a section
# narrows its own further (a seed, a rank that the model bounds).
INT_RANGE = (-(2**63), 2**63 - 1)
MAX_SEED = 2**32 - 1


def coerce(spec: dataclasses.Field, value: Any) -> Any:
    """Accept a YAML/JSON scalar for a field; reject a wrong type with a clear message. The rules
    every setting shares are here, where values enter: a float is a finite number (no nan or inf:
    no setting means anything at infinity, and nan passes every `<` check), an int fits 64 bits."""
    value = _coerce_type(spec, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{spec.name} {value!r} is not a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise UserError(f"{spec.name} {value} is out of range (an integer setting lies in [-2**63, 2**63 - 1])")
    return value


def _coerce_type(spec: dataclasses.Field, value: Any) -> Any:
    annotation = str(spec.type)
    if value is None:
        if "None" in annotation:
            return None
        raise UserError(f"config key {spec.name!r} may not be null")
    if annotation.startswith("dict"):
        if not isinstance(value, dict):
            raise UserError(f"config key {spec.name!r} must be a mapping, got {shown(value)}")
        return dict(value)
    base = annotation.split("|")[0].strip()
    kind = _SCALARS[base]
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
    elif isinstance(value, str):
        return value
    raise UserError(f"config key {spec.name!r} must be {base}, got {shown(value)}")
