"""The Hugging Face adapter: a padded batch of a HF sequence classifier (also wrapped by peft) as
the two functions the engines differentiate, plus the length buckets both engines vmap over.

* `sequence_classifier_function`: one sample's logits [O] from (parameters, its tensors), for
  `torch.func` (the Jacobian engine);
* `classifier_forward`: a bucket's logits [B, O], the model's own batched forward (the
  layer-wise engine, whose hooks need real modules).

Both give the same function of the parameters: HF's mask builder branches on data, which `vmap`
rejects, and sdpa's CPU kernel has no vmap batching rule, so both pass a prepared 4-D additive
mask and need eager attention (same maths, same logits; tested). Call them inside
`eager_attention(model)`, which `empirical_ntk` and `naive_ntk` enter once around the whole
computation (switching costs ~1 ms, a call of `f` happens per bucket and chunk), so the model
leaves with the attention implementation it came with.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.func import functional_call

# A sample function maps (parameters by name, one sample's tensors...) to that sample's logits [O].
SampleFunction = Callable[..., torch.Tensor]

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
# samples per vmapped Jacobian / batched forward: on CPU 8 beat 4, 16 and 32 in time and peak
# memory for both engines (benchmarks/ntk.py sizes)
DEFAULT_BUCKET_SIZE = 8


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Every HF model inside `model` computes with eager attention inside the block; afterwards
    each config (and sub-config) gets back exactly the implementation it had (sdpa, flash, ...).
    The config is what HF's attention layers read at every call, so this is all that changes."""
    from transformers import PreTrainedModel

    saved: dict[int, tuple[object, object]] = {}
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            for config in _configs(module.config):
                saved.setdefault(id(config), (config, config._attn_implementation))
    try:
        for module in model.modules():
            if isinstance(module, PreTrainedModel) and module.config._attn_implementation != "eager":
                module.set_attn_implementation("eager")
        yield
    finally:
        for config, implementation in saved.values():
            # the internal attribute: the public setter would also rewrite the sub-configs,
            # each of which is restored to its own saved value here
            config._attn_implementation_internal = implementation


def _configs(config) -> Iterator:
    """A config and its sub-configs, at any depth."""
    yield config
    for key in getattr(config, "sub_configs", {}):
        sub = getattr(config, key, None)
        if sub is not None:
            yield from _configs(sub)


def additive_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] padding mask (1 = token) → the [B, 1, L, L] additive mask HF models accept as is:
    0 where attended, the dtype's minimum at padding (on the mask's device). Built here, not by
    HF's mask builder, whose data-dependent branches `vmap` rejects."""
    length = mask.shape[1]
    additive = (1.0 - mask.to(dtype)) * torch.finfo(dtype).min
    return additive[:, None, None, :].expand(-1, 1, length, length)


def sequence_classifier_function(model: torch.nn.Module) -> tuple[SampleFunction, tuple[str, ...]]:
    """(f, input keys) for a HF sequence classifier: f(params, *sample) returns the logits [O] of
    one (padded) sample. The padding mask becomes a 4-D additive mask, so padded positions change
    nothing (the logits equal the unpadded ones). Call f inside `eager_attention(model)`."""
    model.eval()

    def f(params: dict[str, torch.Tensor], input_ids, attention_mask, token_type_ids=None):
        dtype = next(iter(params.values())).dtype
        kwargs = {"input_ids": input_ids[None], "attention_mask": additive_attention_mask(attention_mask[None], dtype)}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids[None]
        return functional_call(model, params, args=(), kwargs=kwargs).logits[0]

    return f, INPUT_KEYS


def classifier_forward(model: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """Batched logits [B, O] of a HF sequence classifier with the same 4-D additive mask and eager
    attention as `sequence_classifier_function` (so both engines see the same function); call it
    inside `eager_attention(model)`."""
    model.eval()
    dtype = next(model.parameters()).dtype

    def forward(bucket: dict[str, torch.Tensor]) -> torch.Tensor:
        kwargs = {"input_ids": bucket["input_ids"],
                  "attention_mask": additive_attention_mask(bucket["attention_mask"], dtype)}
        if "token_type_ids" in bucket:
            kwargs["token_type_ids"] = bucket["token_type_ids"]
        return model(**kwargs).logits

    return forward


# ---- batches ---------------------------------------------------------------------------------
def sample_inputs(batch: dict[str, torch.Tensor], keys: Sequence[str]) -> tuple[torch.Tensor, ...]:
    return tuple(batch[k] for k in keys if k in batch)


def length_buckets(batch: dict[str, torch.Tensor], inputs: tuple[torch.Tensor, ...], size: int):
    """[(positions, inputs trimmed to the bucket's longest sample)]: samples sorted by length and
    vmapped `size` at a time, so a short sentence is not padded to the batch's longest (padding
    costs FLOPs and changes nothing). Without an attention mask: one bucket, untrimmed. The
    positions live on the inputs' device (they index the engines' tensors there)."""
    n = inputs[0].shape[0]
    if "attention_mask" not in batch:
        return [(torch.arange(n, device=inputs[0].device), inputs)]
    lengths = batch["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    buckets = []
    for start in range(0, n, max(1, size)):
        positions = order[start : start + size]
        longest = int(lengths[positions].max())
        buckets.append((positions, tuple(x[positions][:, :longest] for x in inputs)))
    return buckets
