"""The layer-wise (factored) empirical NTK: Eq. 6 without forming any per-sample Jacobian.

A linear layer y_t = W a_t + b applied at the positions t of a sample x has

    ∂F_α(x)/∂W = Σ_t δ_{α,t} a_tᵀ,    δ_{α,t} = ∂F_α(x)/∂y_t,

so its share of the kernel is

    ⟨∂F_α(x)/∂W, ∂F_β(x′)/∂W⟩ = Σ_{t∈x, u∈x′} (δ_{α,t}·δ_{β,u}) (a_t·a_u)        ("ghost" form)

(the trick DP-SGD uses for per-sample gradient norms, here for every pair of samples). It needs
only the layer's inputs a and output gradients δ, which one batched forward and one backward (the
O logits' cotangents vmapped together, each summed over the batch: samples do not interact in
eval mode) deliver for every layer at once. Per layer the engine takes the cheaper contraction:
the ghost form costs T²·d_in + (O·T)²·d_out for T real tokens, explicit per-sample gradients
(N·O)²·d_in·d_out. For a 384-wide MiniLM layer on SST-2 sentences (~13 tokens) the ghost form
wins, for a rank-8 LoRA matrix or the head the explicit one. Padding positions are dropped
(their δ is exactly zero).

Supported parameter owners (everything in BERT-family encoders and LoRA adapters):
  * nn.Linear    weight (ghost or explicit), bias (Σ_t δ_t per sample);
  * nn.LayerNorm weight (Σ_t δ_t ⊙ â_t with â the normalized input), bias;
  * nn.Embedding weight (ghost form with a_t·a_u = [token_t = token_u]; the padding row, whose
    gradient autograd fixes at zero, is skipped).
Any other parameter goes to the Jacobian engine (`jacobian.py`; `ttrlab.theory.ntk.empirical_ntk`
does the split). Memory: the kernel, plus a and δ of the real tokens for a group of layers
(≤ `max_bytes`; more groups mean more passes), plus one bucket's activations — never N·P.

Device and precision: every tensor made here lives on the device of the batch and the model; the
forward and backward run under the caller's autocast, the contractions without it, in float32
and accumulated in float64 (`precision.py`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ttrlab.theory._src.hf import INPUT_KEYS, classifier_forward, length_buckets, sample_inputs
from ttrlab.theory._src.precision import exact, gram, widen

GHOST_BLOCK_ROWS = 512  # O·token rows of one ghost block: bounds its Gram; off-diagonal blocks are computed once


@dataclass
class Site:
    """A module whose own parameters are differentiated, and what one pass recorded for it."""

    module_name: str
    module: nn.Module
    names: dict[str, str]  # 'weight'/'bias' → full parameter name (selected ones only)
    inputs: list[torch.Tensor] = field(default_factory=list)  # per call: rows [T_c, d_in] (indices for embeddings)
    samples: list[torch.Tensor] = field(default_factory=list)  # per call: sample index of each row
    deltas: list[torch.Tensor] = field(default_factory=list)  # per call: [O, T_c, d_out]
    pending: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (output, row mask) awaiting δ

    @property
    def kind(self) -> str:
        return kind_of(self.module)

    def estimated_bytes(self, tokens: int, outputs: int) -> int:
        """Stored rows for `tokens` rows: inputs plus O output gradients (float32)."""
        d_in, d_out = dims(self.module)
        return 4 * tokens * (d_in + outputs * d_out)


def kind_of(module: nn.Module) -> str | None:
    """Exact types only: a subclass may use its weight another way (MultiheadAttention's out_proj
    is a Linear subclass whose forward is never called; quantized Linears dequantize)."""
    if type(module) is nn.Linear:
        return "linear"
    if type(module) is nn.LayerNorm:
        return "layer_norm"
    if type(module) is nn.Embedding and module.max_norm is None:  # max_norm rewrites the table in forward
        return "embedding"
    return None


def dims(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.Embedding):
        return 1, module.embedding_dim
    width = math.prod(module.normalized_shape)
    return width, width


def supported_sites(model: nn.Module, names: Sequence[str]) -> list[Site]:
    """The modules that own (directly) at least one of `names` and that this engine handles. A
    parameter shared by several modules (tied weights) is left out: its gradient has terms from
    every user, which one site's hooks would not see."""
    wanted = set(names)
    outside = called_outside_the_batch(model)
    owners: dict[int, int] = {}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            owners[id(parameter)] = owners.get(id(parameter), 0) + 1
    sites = []
    for module_name, module in model.named_modules():
        if kind_of(module) is None or module_name in outside:
            continue
        own = {}
        for local, parameter in module.named_parameters(recurse=False):
            full = f"{module_name}.{local}" if module_name else local
            if full in wanted and owners[id(parameter)] == 1:
                own[local] = full
        if own:
            sites.append(Site(module_name, module, own))
    return sites


def called_outside_the_batch(model: nn.Module) -> set[str]:
    """Modules whose forward also runs on something else than the batch, so their hooks would
    record rows of no sample: DoRA's (peft `use_dora`) lora_A and lora_B, which it also applies to
    an identity matrix for the weight norm. Their parameters go to the Jacobian engine."""
    outside = set()
    for name, module in model.named_modules():
        if any(getattr(module, "use_dora", {}).values()):
            for part in ("lora_A", "lora_B"):
                outside.update(f"{name}.{part}.{adapter}" for adapter in getattr(module, part, {}))
    return outside


def group_sites(sites: list[Site], tokens: int, outputs: int, max_bytes: int) -> list[list[Site]]:
    """Consecutive groups whose stored rows fit in `max_bytes` (one pass per group)."""
    groups: list[list[Site]] = [[]]
    size = 0
    for site in sites:
        need = site.estimated_bytes(tokens, outputs)
        if groups[-1] and size + need > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(site)
        size += need
    return [g for g in groups if g]


# ---- the engine ------------------------------------------------------------------------------
def contributions(model: nn.Module, batch: dict[str, torch.Tensor], sites: list[Site],
                  per_name: dict[str, torch.Tensor], max_bytes: int, bucket_size: int) -> torch.Tensor:
    """Fill `per_name` with each site parameter's kernel share [N, O, N, O]; return the logits
    [N, O]. Only the selected parameters require grad during the passes (restored afterwards)."""
    keys = [k for k in INPUT_KEYS if k in batch]
    if "attention_mask" not in batch:
        batch = dict(batch, attention_mask=torch.ones_like(batch["input_ids"]))
        keys.append("attention_mask")
    buckets = [(positions, dict(zip(keys, trimmed)))
               for positions, trimmed in length_buckets(batch, sample_inputs(batch, keys), bucket_size)]
    forward = classifier_forward(model)
    n = batch["input_ids"].shape[0]
    tokens = int(batch["attention_mask"].sum())
    named = dict(model.named_parameters())
    selected = {name for site in sites for name in site.names.values()}
    saved = {name: p.requires_grad for name, p in named.items()}
    try:
        for name, p in named.items():  # differentiate exactly the selected parameters' modules
            p.requires_grad_(name in selected)
        with torch.no_grad():
            outputs = forward(buckets[0][1]).shape[1]
        logits = None
        for group in group_sites(sites, tokens, outputs, max_bytes):
            logits = record_pass(forward, buckets, group)
            with exact(logits.device):
                for site in group:
                    per_name.update(site_kernels(site, n, max_bytes))
    finally:
        for name, p in named.items():
            p.requires_grad_(saved[name])
    return logits


# ---- one pass: forward with hooks, one backward for all logits -------------------------------------------
def record_pass(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    buckets: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
    sites: list[Site],
) -> torch.Tensor:
    """Run every bucket forward with hooks on `sites` and backward (all logits at once); fill each
    site's inputs/samples/deltas. Returns the logits [N, O] in the original sample order."""
    current: dict[str, torch.Tensor] = {}
    handles = [site.module.register_forward_hook(_recorder(site, current)) for site in sites]
    logits_parts = []
    try:
        for positions, bucket in buckets:
            current["positions"] = positions
            current["mask"] = bucket["attention_mask"].bool()
            logits = forward(bucket)
            outputs = logits.shape[1]
            pending = [(site, out, rows) for site in sites for out, rows in site.pending]
            for site in sites:
                site.pending.clear()
            # one backward for all O logits: the cotangents e_a (summed over the batch: samples do
            # not interact in eval mode) are vmapped through the same graph. None if no module of
            # this group ran (their weights are used some other way: the Jacobian engine's)
            basis = torch.eye(outputs, dtype=logits.dtype, device=logits.device)[:, None, :].expand(outputs, *logits.shape)
            grads = torch.autograd.grad(logits, [out for _, out, _ in pending], grad_outputs=basis,
                                        is_grads_batched=True, allow_unused=True) if pending else ()
            for (site, out, rows), g in zip(pending, grads):
                width = out.shape[-1] if site.kind != "layer_norm" else math.prod(site.module.normalized_shape)
                g = torch.zeros(outputs, *out.shape, dtype=out.dtype, device=out.device) if g is None else g
                site.deltas.append(g.reshape(outputs, -1, width)[:, rows])
            logits_parts.append((positions, logits.detach()))
            del pending, grads, logits
    finally:
        for handle in handles:
            handle.remove()
        for site in sites:
            site.pending.clear()
    n = sum(len(p) for p, _ in logits_parts)
    first = logits_parts[0][1]
    out = torch.empty(n, first.shape[1], dtype=first.dtype, device=first.device)
    for positions, part in logits_parts:
        out[positions] = part
    return out


def _recorder(site: Site, current: dict[str, torch.Tensor]):
    kind = site.kind

    def hook(module, args, output):
        positions, mask = current["positions"], current["mask"]
        batch, length = mask.shape
        x = args[0]
        feature_dims = {"linear": 1, "embedding": 0, "layer_norm": len(getattr(module, "normalized_shape", ()))}[kind]
        prefix = x.shape[: x.dim() - feature_dims] if feature_dims else x.shape
        if prefix[0] != batch:
            if prefix[0] != 1:
                raise RuntimeError(f"{site.module_name}: leading dimension {prefix[0]} is not the batch ({batch})")
            # a batch-broadcast call (BERT's position embeddings take position_ids of shape [1, L]):
            # give every sample its own copy, so its gradient stays per sample. Downstream ops
            # broadcast the [1, ...] tensor against the batch anyway, so the values are unchanged.
            x = x.expand(batch, *x.shape[1:])
            output = output.expand(batch, *output.shape[1:])
            prefix = (batch, *prefix[1:])
        if tuple(prefix) == (batch, length):
            rows = mask.reshape(-1).clone()
            samples = positions[:, None].expand(batch, length).reshape(-1)
        else:  # pooled (e.g. [B, d] for the head), or another layout: every position is a row
            per_sample = math.prod(prefix[1:])
            rows = torch.ones(batch * per_sample, dtype=torch.bool, device=mask.device)
            samples = positions.repeat_interleave(per_sample)
        flat = x.detach().reshape(batch * math.prod(prefix[1:]), -1)
        if kind == "embedding":
            flat = flat[:, 0]
            if module.padding_idx is not None:  # autograd never updates the padding row
                rows = rows & (flat != module.padding_idx)
        elif kind == "layer_norm":
            flat = torch.nn.functional.layer_norm(flat, (flat.shape[-1],), eps=module.eps)  # â
        site.inputs.append(flat[rows].clone())
        site.samples.append(samples[rows].clone())
        # the model continues on a copy, so an in-place op downstream cannot change what we
        # differentiate against
        replacement = output.clone()
        site.pending.append((output, rows))
        return replacement

    return hook


# ---- contractions ----------------------------------------------------------------------------
def per_sample_sum(values: torch.Tensor, samples: torch.Tensor, n: int) -> torch.Tensor:
    """[O, T, F] rows → [N, O, F] per-sample sums."""
    o, _, width = values.shape
    out = torch.zeros(n, o, width, dtype=values.dtype, device=values.device)
    out.index_add_(0, samples, values.transpose(0, 1))
    return out


def gram_of_per_sample(g: torch.Tensor) -> torch.Tensor:
    """[N, O, F] per-sample gradients → [N, O, N, O] kernel share (float64)."""
    n, o, _ = g.shape
    return gram(g.reshape(n * o, -1)).reshape(n, o, n, o)


def ghost_gram(inputs: torch.Tensor, deltas: torch.Tensor, samples: torch.Tensor, n: int,
               equality: bool = False, block_rows: int | None = None) -> torch.Tensor:
    """Σ_{t∈i, u∈j} (δ_{a,t}·δ_{b,u}) (a_t·a_u) for every pair of samples (i, j), in blocks of
    samples of at most `block_rows` O·token rows, so no (O·T)² matrix is ever formed at once.
    `equality`: the inputs are token indices and a_t·a_u = [index_t = index_u]."""
    o = deltas.shape[0]
    block_rows = block_rows or GHOST_BLOCK_ROWS
    order = torch.argsort(samples, stable=True)
    samples, inputs, deltas = samples[order], inputs[order], deltas[:, order]
    kernel = torch.zeros(n, o, n, o, dtype=torch.float64, device=deltas.device)
    bounds = sample_blocks(samples, n, max(1, block_rows // o))
    for p, (i0, i1, r0, r1) in enumerate(bounds):
        for (j0, j1, s0, s1) in bounds[p:]:
            if r1 == r0 or s1 == s0:
                continue
            a_i, a_j = inputs[r0:r1], inputs[s0:s1]
            overlap = (a_i[:, None] == a_j[None, :]).to(deltas.dtype) if equality else a_i @ a_j.T
            d_i, d_j = deltas[:, r0:r1], deltas[:, s0:s1]
            dots = (d_i.reshape(-1, d_i.shape[-1]) @ d_j.reshape(-1, d_j.shape[-1]).T).reshape(o, r1 - r0, o, s1 - s0)
            weighted = dots * overlap[None, :, None, :]
            one_i = torch.nn.functional.one_hot(samples[r0:r1] - i0, i1 - i0).to(deltas.dtype)
            one_j = torch.nn.functional.one_hot(samples[s0:s1] - j0, j1 - j0).to(deltas.dtype)
            block = torch.einsum("ti,atbu,uj->iajb", one_i, weighted, one_j).double()
            kernel[i0:i1, :, j0:j1, :] += block
            if (i0, i1) != (j0, j1):
                kernel[j0:j1, :, i0:i1, :] += block.permute(2, 3, 0, 1)
    return kernel


def sample_blocks(samples: torch.Tensor, n: int, max_rows: int) -> list[tuple[int, int, int, int]]:
    """Contiguous sample ranges [i0, i1) with their row ranges [r0, r1) in the sorted rows, each
    of at most `max_rows` rows (a sample larger than that is a block of its own)."""
    starts = torch.searchsorted(samples, torch.arange(n + 1, device=samples.device)).tolist()
    blocks, i0 = [], 0
    while i0 < n:
        i1 = i0 + 1
        while i1 < n and starts[i1 + 1] - starts[i0] <= max_rows:
            i1 += 1
        blocks.append((i0, i1, starts[i0], starts[i1]))
        i0 = i1
    return blocks


def site_kernels(site: Site, n: int, max_bytes: int) -> dict[str, torch.Tensor]:
    """Kernel share [N, O, N, O] of each selected parameter of one site. Call it without autocast
    (`precision.exact`): the records are widened to float32 here and every product below must
    stay in it."""
    if not site.inputs:
        return {}
    inputs = widen(torch.cat(site.inputs))  # token indices (embeddings) stay integers
    samples = torch.cat(site.samples)
    deltas = widen(torch.cat(site.deltas, dim=1))
    site.inputs.clear()
    site.samples.clear()
    site.deltas.clear()
    o, tokens, d_out = deltas.shape
    out: dict[str, torch.Tensor] = {}
    for local, name in site.names.items():
        if local == "bias":
            out[name] = gram_of_per_sample(per_sample_sum(deltas, samples, n))
        elif site.kind == "layer_norm":
            out[name] = gram_of_per_sample(per_sample_sum(deltas * inputs[None], samples, n))
        elif site.kind == "embedding":
            out[name] = ghost_gram(inputs, deltas, samples, n, equality=True)
        else:
            d_in = inputs.shape[1]
            explicit = (n * o) ** 2 * d_in * d_out + o * tokens * d_in * d_out
            ghost = tokens**2 * d_in + (o * tokens) ** 2 * d_out
            if explicit <= ghost and 4 * n * o * d_in * d_out <= max_bytes:
                out[name] = gram_of_per_sample(per_sample_weight_gradients(inputs, deltas, samples, n))
            else:
                out[name] = ghost_gram(inputs, deltas, samples, n)
    return out


def per_sample_weight_gradients(inputs: torch.Tensor, deltas: torch.Tensor, samples: torch.Tensor, n: int) -> torch.Tensor:
    """[N, O, d_out·d_in]: Σ_t δ_{a,t} a_tᵀ per sample, by one batched matmul over samples padded
    to the longest."""
    o, tokens, d_out = deltas.shape
    order = torch.argsort(samples, stable=True)
    samples, inputs, deltas = samples[order], inputs[order], deltas[:, order]
    counts = torch.bincount(samples, minlength=n)
    slot = torch.arange(tokens, device=samples.device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    longest = int(counts.max())
    a = torch.zeros(n, longest, inputs.shape[1], dtype=inputs.dtype, device=inputs.device)
    a[samples, slot] = inputs
    d = torch.zeros(n, longest, o * d_out, dtype=deltas.dtype, device=deltas.device)
    d[samples, slot] = deltas.permute(1, 0, 2).reshape(tokens, o * d_out)
    return (d.transpose(1, 2) @ a).reshape(n, o, d_out * inputs.shape[1])
