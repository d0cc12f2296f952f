"""The result document of one run, for every run kind: one typed schema that the code writes,
the database stores (`ResultStore.record`) and the report reads.

    {"schema_version": 2, "kind": "train" | "generative" | "theory", "run_key": "...",
     "config":   {...the flat resolved config: every setting, derived values filled in...},
     "versions": {"ttrlab", "python", "torch", "transformers", "peft"},
     "runtime":  {"device": "cuda:0", "device_name": "NVIDIA H200", "precision": "bf16"},
     "data":     {...what the run trained and was scored on (counts; kind-specific)...},
     "poison":   {"attack", "rate", "count", "indices_sha256", ...},
     "method":   {"name", "trainable_parameters", "total_parameters", ...method details},
     "metrics":  {...nested numbers; the database flattens them to dotted names...},
     "train":    {"steps", "seconds", "tokens_per_second", "real_tokens", "padded_tokens",
                  "final_loss", "eval_seconds", "learned" (classifiers: the fit beat a constant
                  predictor, `ttrlab.training.fit`)} | null (theory does not train),
     ...kind-specific sections at the top level: "generations", "counts" (generative);
        "compute", "ntk", "m_prime", "gradient_alignment", "fisher", "theorem_3_4" (theory)}

Schema 1 (before the run kinds shared one pipeline) had no "runtime" and no "kind" for
classification runs; `RunResult.from_dict` reads both versions.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2
CORE_SECTIONS = ("schema_version", "kind", "run_key", "config", "versions", "runtime", "data", "poison", "method",
                 "metrics", "train")


@dataclass
class RunResult:
    kind: str
    run_key: str
    config: dict[str, Any]
    versions: dict[str, str]
    runtime: dict[str, str] | None
    data: dict[str, Any]
    poison: dict[str, Any]
    method: dict[str, Any]
    metrics: dict[str, Any]
    train: dict[str, Any] | None = None
    sections: dict[str, Any] = field(default_factory=dict)  # kind-specific, written at the top level
    schema_version: int = SCHEMA_VERSION
    # the trained model and its tokenizer, when the caller asked to keep them (never serialised)
    model: Any = field(default=None, repr=False, compare=False)
    tokenizer: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (the model is not part of it)."""
        document = {name: getattr(self, name) for name in CORE_SECTIONS}
        clash = set(self.sections) & set(document)
        if clash:
            raise ValueError(f"kind-specific section(s) {sorted(clash)} shadow core sections")
        return {**document, **self.sections}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RunResult:
        """A stored document of schema 1 or 2."""
        version = document.get("schema_version", 1)
        if version not in (1, SCHEMA_VERSION):
            raise ValueError(f"result schema_version {version!r} is not 1 or {SCHEMA_VERSION}")
        kind = document.get("kind", "train")  # schema 1 classification documents had no kind
        return cls(
            kind=kind, run_key=document["run_key"], config=document.get("config", {}),
            versions=document.get("versions", {}), runtime=document.get("runtime"),
            data=document.get("data", {}), poison=document.get("poison", {}), method=document.get("method", {}),
            metrics=document.get("metrics", {}), train=document.get("train"),
            sections={k: v for k, v in document.items() if k not in CORE_SECTIONS},
            schema_version=version,
        )


def versions() -> dict[str, str]:
    """The versions of what computed a run."""
    import peft
    import torch
    import transformers

    from ttrlab import __version__

    return {
        "ttrlab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
