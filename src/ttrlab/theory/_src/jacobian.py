"""The Jacobian engine ("jacobian contraction" in neural-tangents' terms): chunked per-sample
Jacobians from `torch.func`, for any parameter and any per-sample function.

* Per-sample Jacobians: `vmap` over the samples of `jacrev` of one sample's logits, with
  `functional_call` so only the chosen parameters are differentiated (all others enter
  detached). Dropout is off (the model is in eval mode). Samples are vmapped in length buckets
  (`hf.length_buckets`), each trimmed to its longest member.
* FF on a real model has P ≈ 10⁷–10⁸ parameters: an N·O × P Jacobian does not fit. The
  parameters are cut into *chunks* of at most `max_jacobian_bytes / (4·N·O)` elements (a tensor
  larger than that is cut into row blocks); one chunk's Jacobian J_c is formed, contracted into
  K += J_c J_cᵀ (accumulated in float64) and freed. Peak memory is O((N·O)² + chunk) plus one
  batch of activations, independent of P. The price is one forward/backward pass per chunk
  (a chunk deep in the network only back-propagates as far as its own layer).
* Embedding tables: ∂F/∂E is zero on every row no input token selects, so only the rows the
  batch uses are differentiated (exact, and 30k → a few hundred rows for a word embedding).
* Device and precision: the index slots and everything else made here live on the parameters'
  device; `vmap(jacrev(...))` runs under the caller's autocast, each J_c J_cᵀ without it, in
  float32 (`precision.py`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jacrev, vmap

from ttrlab.theory._src.hf import SampleFunction, length_buckets, sample_inputs, sequence_classifier_function
from ttrlab.theory._src.precision import gram


@dataclass(frozen=True)
class Piece:
    """One differentiated variable: a whole parameter (rows=None) or a set of its rows."""

    name: str
    rows: torch.Tensor | None
    numel: int


def used_embedding_rows(model: torch.nn.Module, run_forward: Callable[[], None], names: set[str]) -> dict[str, torch.Tensor]:
    """For every nn.Embedding whose weight is in `names`: the rows the batch selects (a forward
    pass with hooks records them)."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for module_name, module in model.named_modules():
        weight_name = f"{module_name}.weight" if module_name else "weight"
        if isinstance(module, torch.nn.Embedding) and weight_name in names:
            def hook(mod, args, _name=weight_name):
                seen.setdefault(_name, []).append(args[0].reshape(-1).detach())
            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run_forward()
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.unique(torch.cat(ids)) for name, ids in seen.items()}


def make_pieces(params: dict[str, torch.Tensor], sparse_rows: dict[str, torch.Tensor], chunk_numel: int) -> list[Piece]:
    """Whole tensors, except embedding tables: their used rows, cut into blocks of at most
    `chunk_numel` elements. (A dense tensor larger than a chunk stays whole and becomes a chunk
    of its own: cutting it would not save memory, since the gradient of the full tensor is
    formed anyway.)"""
    pieces: list[Piece] = []
    for name, tensor in params.items():
        if name in sparse_rows:
            rows, row_numel = sparse_rows[name], tensor[0].numel()
            step = max(1, chunk_numel // row_numel)
            for start in range(0, len(rows), step):
                block = rows[start : start + step]
                pieces.append(Piece(name, block, len(block) * row_numel))
        else:
            pieces.append(Piece(name, None, tensor.numel()))
    return pieces


def pack_chunks(pieces: list[Piece], chunk_numel: int) -> list[list[Piece]]:
    chunks: list[list[Piece]] = [[]]
    size = 0
    for piece in pieces:
        if chunks[-1] and size + piece.numel > chunk_numel:
            chunks.append([])
            size = 0
        chunks[-1].append(piece)
        size += piece.numel
    return [c for c in chunks if c]


def row_slots(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """For every row of `table`: its position in `rows`, or -1 (on the table's device)."""
    slot = torch.full((table.shape[0],), -1, dtype=torch.long, device=table.device)
    slot[rows] = torch.arange(len(rows), device=table.device)
    return slot


def contributions(model: torch.nn.Module, batch: dict[str, torch.Tensor], names: list[str],
                  per_name: dict[str, torch.Tensor], max_jacobian_bytes: int,
                  sample_function: tuple[SampleFunction, tuple[str, ...]] | None, bucket_size: int):
    """Add each parameter of `names` its kernel share [N, O, N, O] to `per_name`; return
    (logits [N, O], chunks, details). Call it inside `hf.eager_attention(model)`."""
    f, keys = sample_function or sequence_classifier_function(model)
    inputs = sample_inputs(batch, keys)
    all_params = {n: p.detach() for n, p in model.named_parameters()}
    selected = {n: all_params[n] for n in names}
    buckets = length_buckets(batch, inputs, bucket_size)
    with torch.no_grad():
        logits = torch.cat([vmap(f, in_dims=(None,) + (0,) * len(b))(all_params, *b) for _, b in buckets])
    n, o = logits.shape
    rows = n * o
    chunk_numel = max(1, max_jacobian_bytes // (4 * rows))
    order = torch.cat([positions for positions, _ in buckets])
    inverse = torch.argsort(order)

    embedding_weights = {
        f"{m}.weight" for m, module in model.named_modules() if isinstance(module, torch.nn.Embedding)
    } & set(names)

    def forward_all():  # plain (not vmapped) forwards, so the hooks see real tensors
        for _, b in buckets:
            for i in range(b[0].shape[0]):
                f(all_params, *(x[i] for x in b))

    sparse = used_embedding_rows(model, forward_all, embedding_weights) if embedding_weights else {}
    pieces = make_pieces(selected, sparse, chunk_numel)
    chunks = pack_chunks(pieces, chunk_numel)

    # Embedding rows enter through a forward hook: the table itself stays a constant and the
    # hook swaps in the differentiated rows where the batch selects them, so the backward pass
    # only ever forms gradients of those rows (never of the whole table).
    active: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for module_name, module in model.named_modules():
        weight_name = f"{module_name}.weight" if module_name else "weight"
        if weight_name in sparse:
            def swap_rows(mod, args, output, _name=weight_name):
                if _name not in active:
                    return None
                position, rows = active[_name]
                slot = position[args[0]]
                picked = torch.nn.functional.embedding(slot.clamp(min=0), rows)
                return torch.where((slot >= 0)[..., None], picked, output)
            handles.append(module.register_forward_hook(swap_rows))

    def original_order(matrix):  # rows/columns were in bucket order
        return matrix.reshape(n, o, n, o)[inverse][:, :, inverse]

    try:
        for chunk in chunks:
            variables = {i: (all_params[p.name] if p.rows is None else all_params[p.name][p.rows]).clone() for i, p in enumerate(chunk)}
            positions = {i: row_slots(all_params[p.name], p.rows) for i, p in enumerate(chunk) if p.rows is not None}

            def f_chunk(vars_, *sample, _chunk=chunk, _positions=positions):
                params = dict(all_params)
                active.clear()
                for i, p in enumerate(_chunk):
                    if p.rows is None:
                        params[p.name] = vars_[i]
                    else:
                        active[p.name] = (_positions[i], vars_[i])
                try:
                    return f(params, *sample)
                finally:
                    active.clear()

            per_bucket = [vmap(jacrev(f_chunk), in_dims=(None,) + (0,) * len(b))(variables, *b) for _, b in buckets]
            for i, p in enumerate(chunk):
                j = torch.cat([jac[i] for jac in per_bucket]).reshape(rows, -1)
                share = original_order(gram(j))
                per_name[p.name] = per_name[p.name] + share if p.name in per_name else share
            del per_bucket
    finally:
        for handle in handles:
            handle.remove()
    details = {
        "sparse_embedding_rows": {k: int(len(v)) for k, v in sparse.items()},
        "differentiated_elements": sum(p.numel for p in pieces),
    }
    return logits.detach()[inverse], len(chunks), details
