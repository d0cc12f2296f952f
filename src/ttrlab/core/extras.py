"""The optional extras of pyproject.toml (`pip install 'ttrlab[gen]'`): which modules each one
brings, and `require`, which a command calls before its work so that a missing extra is one
line naming what to install, not an ImportError from deep inside a library after minutes of
work (transformers imports `gguf` only when it reads a GGUF model; `rouge_score` is needed
only at the final evaluation)."""
from __future__ import annotations

import importlib.util

from ttrlab.core.errors import UserError

EXTRAS: dict[str, tuple[str, ...]] = {
    "gen": ("gguf", "sentencepiece", "rouge_score"),
    "ray": ("ray",),
    "postgres": ("psycopg",),
}


def missing(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    return [module for module in EXTRAS[extra] if _absent(module)]


def require(extra: str, what: str) -> None:
    """UserError unless every module of `extra` is installed; `what` names who needs it."""
    absent = missing(extra)
    if absent:
        raise UserError(f"{what} needs the optional extra {extra!r} (missing: {', '.join(absent)}): "
                        f"pip install 'ttrlab[{extra}]'")


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent package missing, or a module stubbed out
        return True
