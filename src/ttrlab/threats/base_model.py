"""Stage 1 of `poisoned_base`: the backdoored base, built once and stored.

Stage 1 *is* an ordinary `fine_tune_poison` run: full fine-tuning of the pretrained classifier
on `base_size` training examples poisoned by the run's attack at its rate, `base_steps` steps at
`base_lr`, the run's seed, batch size, length and dev set (`stage_one_config`). So it is keyed by
that run's key and trained and scored by the same pipeline, and its record holds the same metrics
(ASR and clean accuracy after stage 1: what there is for stage 2 to remove).

The trained model is stored like the generative aligned start: safetensors weights (loading them
executes no code) plus a JSON record under `$TTRLAB_CACHE_DIR/poisoned_base/<key>/` (default
`~/.cache/ttrlab`), written atomically under a file lock (two workers needing it at once build it
once), reused by every later run and process on the machine. The key adds the device and
precision to the stage-1 run key: a base trained in bf16 on a GPU is not the fp32 CPU one.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttrlab.core.errors import UserError
from ttrlab.core.io import build_lock
from ttrlab.threats.base import DEFAULT_THREAT

CACHE_ENV = "TTRLAB_CACHE_DIR"  # the same store root as the generative aligned start
STAGE_VERSION = 1  # bump when the stage's recipe changes, so stored bases are rebuilt
RECORD = "stage.json"
WEIGHTS = "model.safetensors"


def stage_one_config(config):
    """The `fine_tune_poison` FF run that is stage 1 of `config` (a poisoned_base run)."""
    from ttrlab.threats.poisoned_base import base_learning_rate

    return config.replace(threat=DEFAULT_THREAT, method="ff", train_size=config.base_size,
                          max_steps=config.base_steps, lr=base_learning_rate(config), defense="none",
                          curve_every=0, checkpoint_dir=None)


@dataclass(frozen=True)
class StoredBase:
    folder: Path
    record: dict[str, Any]  # stage 1's run key, config, metrics, poison and train sections, its store key

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ttrlab").expanduser()


def store_key(stage, runtime) -> str:
    settings = {"version": STAGE_VERSION, "run_key": stage.run_key(), "device": runtime.type,
                "precision": runtime.precision.name}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def stored_base(config, runtime) -> StoredBase:
    """Stage 1 of `config`: built now if no process built it before, else read from the store."""
    stage = stage_one_config(config)
    key = store_key(stage, runtime)
    folder = cache_dir() / "poisoned_base" / key
    with build_lock(folder):  # two workers that need the same base: one builds, the other waits and reads
        if not (folder / RECORD).is_file():
            build(stage, folder)
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"the stored poisoned base in {str(folder)!r} cannot be read ({str(error).splitlines()[0]}); "
                        f"delete the folder to rebuild it") from None
    return StoredBase(folder, {**record, "key": key})


def load_weights(model, base: StoredBase):
    """`model` (the run's freshly loaded classifier) with stage 1's weights, head included."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(model, base.weights, strict=False)  # tied weights are stored once
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise UserError(f"the stored poisoned base {str(base.weights)!r} cannot be read "
                        f"({str(error).splitlines()[0]}); delete its folder to rebuild it") from None
    if missing or unexpected:
        raise UserError(f"the stored poisoned base in {str(base.folder)!r} does not fit model "
                        f"{base.record['config']['model']!r}; delete the folder to rebuild it")
    return model


def build(stage, folder: Path) -> None:
    """Train stage 1 through the one run pipeline and store its model and record atomically."""
    from safetensors.torch import save_model

    from ttrlab.kinds.classification.experiment import CLASSIFICATION
    from ttrlab.kinds.pipeline import run

    result = run(CLASSIFICATION, stage, keep_model=True)
    document = result.to_dict()
    record = {name: document[name] for name in ("run_key", "config", "data", "poison", "metrics", "train", "versions",
                                                  "runtime")}
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    save_model(result.model.cpu(), str(staging / WEIGHTS))
    (staging / RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
    staging.rename(folder)  # atomic: a reader sees the whole stored base or none


