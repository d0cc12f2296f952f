"""The brute-force empirical NTK: the textbook loop every engine is tested against, and the
baseline of `benchmarks/ntk.py`.

For each sample (unpadded, its own forward through the model's own HF mask handling) and each
logit, one backward pass; the N·O flat gradients of a parameter are stacked into G and its share
is G Gᵀ. Memory N·O·P. The forwards run under the caller's autocast, the Grams without it
(`precision.py`), like the engines.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ttrlab.theory._src.hf import INPUT_KEYS
from ttrlab.theory._src.precision import gram


def per_parameter_kernels(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                          names: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({name: share [N, O, N, O] float64}, logits [N, O]). Only `names` require grad during the
    loop (restored afterwards). Call it inside `hf.eager_attention(model)`, in eval mode."""
    named = dict(model.named_parameters())
    params = [named[n] for n in names]
    saved = {n: p.requires_grad for n, p in named.items()}
    for n, p in named.items():
        p.requires_grad_(n in set(names))
    rows, logits_rows = [], []
    try:
        for i in range(batch["input_ids"].shape[0]):
            length = int(batch["attention_mask"][i].sum())
            kwargs = {k: batch[k][i : i + 1, :length] for k in INPUT_KEYS if k in batch}
            logits = model(**kwargs).logits[0]
            logits_rows.append(logits.detach())
            for a in range(logits.shape[0]):
                grads = torch.autograd.grad(logits[a], params, retain_graph=a + 1 < logits.shape[0], allow_unused=True)
                rows.append([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
    finally:
        for n, p in named.items():
            p.requires_grad_(saved[n])
    n_samples, o = len(logits_rows), logits_rows[0].shape[0]
    kernels = {name: gram(torch.stack([r[k].reshape(-1) for r in rows])).reshape(n_samples, o, n_samples, o)
               for k, name in enumerate(names)}
    return kernels, torch.stack(logits_rows)
