"""peft's table of default LoRA target modules per architecture, read from peft's own source
without importing peft.

Resolving `target_modules: auto` to module names is part of a LoRA run's key, so reading a config
(a spec's dry run, a CLI flag) needs this table — and nothing else of peft, whose import pulls in
torch and transformers (seconds). `ast.literal_eval` reads the table's dict literal as data (no
code runs); should peft ever write it differently, the table is imported instead (slower, the
same answer; `tests/test_cli_startup.py` checks both agree).
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

TABLE = "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING"


@functools.lru_cache(maxsize=None)
def lora_default_targets() -> dict[str, list[str] | str]:
    """{model_type: peft's default LoRA target modules: a list of names, or a regex string}."""
    table = _read_literal()
    if table is not None:
        return table
    from peft.utils import constants

    return dict(getattr(constants, TABLE))


def _read_literal() -> dict[str, list[str] | str] | None:
    spec = importlib.util.find_spec("peft")
    if spec is None or spec.origin is None:
        return None
    try:
        tree = ast.parse((Path(spec.origin).parent / "utils" / "constants.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == TABLE and isinstance(node.value, ast.Dict)):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (list, str)) for k, v in value.items()):
                return value
    return None
