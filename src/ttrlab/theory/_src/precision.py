"""Precision of the engines: what runs under the caller's autocast, and what never does.

A bf16 or fp16 run calls `empirical_ntk` inside `torch.autocast` (`Runtime.autocast`). The
engines keep it for the model's forward and backward passes, so the kernel is that of the model
as the run computes it (weights stay float32; activations, per-layer gradients and the logits
are bf16 where autocast puts them). They leave it for every contraction — J Jᵀ, the ghost Grams,
the per-sample sums — because autocast would run those matmuls in bf16 too: 8 mantissa bits for
sums over thousands of tokens or millions of parameters, a second error on top of the forward's.
Inside `exact(device)` the recorded tensors are widened to at least float32 (`widen`, exact for
bf16/fp16 values) and contracted in float32; each parameter's share is accumulated in float64.

Why float32 and not float64 contractions: widening bf16 records to float32 loses nothing, and
float32 round-off in a sum (~1e-7 relative) is four orders of magnitude below the bf16 forward's
own error (~1e-3; measured 7e-8–9e-8 against float64 contractions, see tests/test_theory_ntk.py);
float64 would cost 2× on a CPU and up to 64× on GPUs with slow float64 units, for no visible
change. An fp32 run (no autocast) is left alone: `exact` is a no-op there and `widen` returns
its argument, so an fp32 kernel is plain float32 arithmetic, nothing widened or cast.

`torch.func` (the Jacobian engine's `vmap(jacrev(...))`) runs under autocast as it is: the casts
autocast inserts are ordinary differentiable ops, so no engine switches autocast off for the model.
"""
from __future__ import annotations

import contextlib

import torch


def exact(device: torch.device):
    """The block runs without autocast on `device` (a no-op where none is on, as in fp32)."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def widen(tensor: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 → float32 (exact); float32, float64 and integer tensors unchanged."""
    if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
        return tensor.float()
    return tensor


def gram(rows: torch.Tensor) -> torch.Tensor:
    """[R, F] → the float64 [R, R] Gram rows·rowsᵀ, contracted in (at least) float32 without
    autocast, on the rows' device."""
    rows = widen(rows)
    with exact(rows.device):
        return (rows @ rows.T).double()
