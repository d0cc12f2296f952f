"""Empirical neural tangent kernel (paper Eq. 6) over the *trainable* parameters of a method.

    K(x, x')[a, b] = ∇θ F_a(x)ᵀ ∇θ F_b(x')        (one entry per pair of output logits a, b)

for a batch of N inputs this is an (N·O) × (N·O) matrix, returned as a tensor [N, O, N, O].
θ is the set of parameters a fine-tuning method trains: every parameter for FF; LoRA's A, B and
the classification head for LoRA (the head is a separate *group*, so "adapters only" and "with
head" both come out of one computation: the kernel is a sum over parameter groups).

Two engines compute it (`empirical_ntk(engine=...)`; the default 'auto' uses the first for every
parameter it supports and the second for the rest):

* 'layerwise' (`ttrlab.theory.layerwise_ntk`): each Linear/LayerNorm/Embedding's share from its
  inputs and output gradients, recorded by one batched forward and backward; no per-sample
  Jacobian at all. See that module.
* 'jacobian' (below; "jacobian contraction" in neural-tangents' terms), for any parameter and
  any per-sample function.

How the Jacobian engine works:

* Per-sample Jacobians come from `torch.func`: `vmap` over the samples of `jacrev` of one
  sample's logits, with `functional_call` so only the chosen parameters are differentiated
  (all others enter detached). Dropout is off (the model is put in eval mode).
* FF on a real model has P ≈ 10⁷–10⁸ parameters: an N·O × P Jacobian does not fit. The
  parameters are cut into *chunks* of at most `max_jacobian_bytes / (4·N·O)` elements (a tensor
  larger than that is cut into row blocks); one chunk's Jacobian J_c is formed, contracted into
  K += J_c J_cᵀ (accumulated in float64) and freed. Peak memory is O((N·O)² + chunk) plus one
  batch of activations, independent of P. The price is one forward/backward pass per chunk
  (a chunk deep in the network only back-propagates as far as its own layer).
* Embedding tables: ∂F/∂E is zero on every row no input token selects, so only the rows the
  batch uses are differentiated (exact, and 30k → a few hundred rows for a word embedding).
* HF attention masks contain data-dependent branches that `vmap` rejects; the sequence
  classifier adapter passes a prepared 4-D additive mask and eager attention instead, which
  gives the same logits (tested). The layer-wise engine's batched forward uses the same mask.

`naive_ntk` is the textbook brute force (one backward per sample and logit, all gradients
stacked): the reference for tests and the baseline of `benchmarks/ntk.py`.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.func import functional_call, jacrev, vmap

from ttrlab.errors import UserError
from ttrlab.theory._src import layerwise

# A sample function maps (parameters by name, one sample's tensors...) to that sample's logits [O].
SampleFunction = Callable[..., torch.Tensor]
GroupFn = Callable[[str], str]

HEAD_MARKERS = ("classifier", "score")
DEFAULT_JACOBIAN_BYTES = 1024 * 2**20
# samples per vmapped Jacobian / batched forward: on CPU 8 beat 4, 16 and 32 in time and peak
# memory for both engines (benchmarks/ntk.py sizes)
DEFAULT_BUCKET_SIZE = 8


# ---- which parameters ------------------------------------------------------------------------
def head_or_body(name: str) -> str:
    """Group of a parameter: 'head' for the classification head (BERT `classifier`, GPT `score`),
    'adapters' for LoRA matrices, else 'body'."""
    parts = name.split(".")
    if any(p in HEAD_MARKERS for p in parts):
        return "head"
    if "lora_A" in parts or "lora_B" in parts or any(p.startswith("lora_") for p in parts):
        return "adapters"
    return "body"


def trainable_names(model: torch.nn.Module, groups: Sequence[str] | None = None) -> list[str]:
    """Names of the parameters that train (requires_grad), optionally only those in `groups`
    (e.g. ('adapters',) for LoRA without its head). Module order."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if groups is not None:
        names = [n for n in names if head_or_body(n) in groups]
    if not names:
        raise UserError(f"no trainable parameter selected (groups={list(groups) if groups else 'all'})")
    return names


# ---- the model adapter -----------------------------------------------------------------------
def use_eager_attention(model: torch.nn.Module) -> None:
    """Switch every HF model inside `model` to eager attention (sdpa's CPU kernel has no vmap
    batching rule and its mask builder branches on data). Same maths, same logits."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.set_attn_implementation("eager")


def sequence_classifier_function(model: torch.nn.Module) -> tuple[SampleFunction, tuple[str, ...]]:
    """(f, input keys) for a HF sequence classifier (also wrapped by peft): f(params, *sample)
    returns the logits [O] of one (padded) sample. The padding mask becomes a 4-D additive mask,
    so padded positions change nothing (the logits equal the unpadded ones)."""
    model.eval()
    use_eager_attention(model)

    def f(params: dict[str, torch.Tensor], input_ids, attention_mask, token_type_ids=None):
        dtype = next(iter(params.values())).dtype
        kwargs = {"input_ids": input_ids[None], "attention_mask": additive_attention_mask(attention_mask[None], dtype)}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids[None]
        return functional_call(model, params, args=(), kwargs=kwargs).logits[0]

    return f, ("input_ids", "attention_mask", "token_type_ids")


def additive_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] padding mask (1 = token) → the [B, 1, L, L] additive mask HF models accept as is:
    0 where attended, the dtype's minimum at padding. Built here, not by HF's mask builder,
    whose data-dependent branches `vmap` rejects."""
    length = mask.shape[1]
    additive = (1.0 - mask.to(dtype)) * torch.finfo(dtype).min
    return additive[:, None, None, :].expand(-1, 1, length, length)


def sample_inputs(batch: dict[str, torch.Tensor], keys: Sequence[str]) -> tuple[torch.Tensor, ...]:
    return tuple(batch[k] for k in keys if k in batch)


def length_buckets(batch: dict[str, torch.Tensor], inputs: tuple[torch.Tensor, ...], size: int):
    """[(positions, inputs trimmed to the bucket's longest sample)]: samples sorted by length and
    vmapped `size` at a time, so a short sentence is not padded to the batch's longest (padding
    costs FLOPs and changes nothing). Without an attention mask: one bucket, untrimmed."""
    n = inputs[0].shape[0]
    if "attention_mask" not in batch:
        return [(torch.arange(n), inputs)]
    lengths = batch["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    buckets = []
    for start in range(0, n, max(1, size)):
        positions = order[start : start + size]
        longest = int(lengths[positions].max())
        buckets.append((positions, tuple(x[positions][:, :longest] for x in inputs)))
    return buckets


# ---- chunking --------------------------------------------------------------------------------
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


# ---- memory ----------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Return freed heap memory to the OS (glibc `malloc_trim`, so memory freed by an earlier
    computation does not hide this one's) and reset the kernel's peak-RSS counter of this
    process (Linux); False where unsupported."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """Peak resident set size since the last reset (VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


# ---- the kernel ------------------------------------------------------------------------------
@dataclass
class NTKResult:
    """kernel: [N, O, N, O] float64 over all selected parameters; groups: the same per parameter
    group ('head', 'adapters', 'body'), summing to `kernel`; logits: [N, O] at θ."""

    kernel: torch.Tensor
    groups: dict[str, torch.Tensor]
    parameters: dict[str, int]
    logits: torch.Tensor
    chunks: int
    seconds: float
    peak_rss_increase_bytes: int | None
    jacobian_chunk_bytes: int
    details: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.kernel.shape[0]

    def matrix(self, group: str | None = None) -> torch.Tensor:
        """(N·O) × (N·O) form."""
        k = self.kernel if group is None else self.groups[group]
        n, o = k.shape[:2]
        return k.reshape(n * o, n * o)

    def trace_form(self, group: str | None = None) -> torch.Tensor:
        """N × N kernel Σ_a K[:, a, :, a] (the output-trace form)."""
        k = self.kernel if group is None else self.groups[group]
        return torch.einsum("iaja->ij", k)


ENGINES = ("auto", "layerwise", "jacobian")


def empirical_ntk(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    names: Sequence[str] | None = None,
    *,
    engine: str = "auto",
    max_jacobian_bytes: int = DEFAULT_JACOBIAN_BYTES,
    group_of: GroupFn = head_or_body,
    sample_function: tuple[SampleFunction, tuple[str, ...]] | None = None,
    bucket_size: int = DEFAULT_BUCKET_SIZE,
) -> NTKResult:
    """The empirical NTK of `model` on `batch` (a padded batch from `ttrlab.training.collate`)
    over the parameters `names` (default: those with requires_grad).

    engine: 'layerwise' contracts each Linear/LayerNorm/Embedding from its inputs and output
    gradients (`ttrlab.theory.layerwise_ntk`, no per-sample Jacobian); 'jacobian' forms chunked
    per-sample Jacobians with torch.func (any parameter, any `sample_function`); 'auto' (default)
    takes the layer-wise route for every parameter it supports and the Jacobian one for the rest.
    Both give the same kernel (tested against the brute-force loop)."""
    if engine not in ENGINES:
        raise UserError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    started = time.perf_counter()
    model.eval()
    names = list(names) if names is not None else trainable_names(model)
    all_params = dict(model.named_parameters())
    unknown = [n for n in names if n not in all_params]
    if unknown:
        raise UserError(f"unknown parameter name(s) {unknown[:3]}")
    if engine == "layerwise" and sample_function is not None:
        raise UserError("engine 'layerwise' runs the model's own batched forward; a custom sample_function needs engine 'jacobian'")
    sites = [] if engine == "jacobian" or sample_function is not None else layerwise.supported_sites(model, names)
    layerwise_names = {name for site in sites for name in site.names.values()}
    if engine == "layerwise" and len(layerwise_names) < len(names):
        unsupported = [n for n in names if n not in layerwise_names]
        raise UserError(f"engine 'layerwise' does not support parameter(s) {unsupported[:3]} (use engine 'auto')")

    can_measure = reset_peak_rss()
    baseline = current_rss_bytes()
    per_name: dict[str, torch.Tensor] = {}
    logits, chunks, details = None, 0, {}
    if sites:
        logits = layerwise_contributions(model, batch, sites, per_name, max_jacobian_bytes, bucket_size)
    # → the Jacobian engine: unsupported parameters, and those of a module the forward never
    # called (its weight is used some other way)
    rest = [n for n in names if n not in per_name]
    if rest and engine == "layerwise":
        raise UserError(f"engine 'layerwise': parameter(s) {rest[:3]} are not used through their module's forward (use engine 'auto')")
    if rest:
        logits_j, chunks, details = jacobian_contributions(
            model, batch, rest, per_name, max_jacobian_bytes, sample_function, bucket_size)
        logits = logits if logits is not None else logits_j
    peak = peak_rss_bytes() if can_measure else None

    groups: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for name in names:  # module order, so sums are formed in the same order by every engine
        group = group_of(name)
        groups[group] = groups[group] + per_name[name] if group in groups else per_name[name]
        counts[group] = counts.get(group, 0) + all_params[name].numel()
    n, o = logits.shape
    return NTKResult(
        kernel=sum(groups.values()),
        groups=groups,
        parameters=counts,
        logits=logits.detach().double(),
        chunks=chunks,
        seconds=time.perf_counter() - started,
        peak_rss_increase_bytes=(peak - baseline) if (peak is not None and baseline is not None) else None,
        jacobian_chunk_bytes=4 * n * o * max(1, max_jacobian_bytes // (4 * n * o)) if rest else 0,
        details={"engine": {"layerwise": len(names) - len(rest), "jacobian": len(rest)}, **details},
    )


def classifier_forward(model: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """Batched logits [B, O] of a HF sequence classifier with the same 4-D additive mask and eager
    attention as `sequence_classifier_function` (so both engines see the same function)."""
    model.eval()
    use_eager_attention(model)
    dtype = next(model.parameters()).dtype

    def forward(bucket: dict[str, torch.Tensor]) -> torch.Tensor:
        kwargs = {"input_ids": bucket["input_ids"],
                  "attention_mask": additive_attention_mask(bucket["attention_mask"], dtype)}
        if "token_type_ids" in bucket:
            kwargs["token_type_ids"] = bucket["token_type_ids"]
        return model(**kwargs).logits

    return forward


def layerwise_contributions(model, batch, sites, per_name, max_bytes, bucket_size) -> torch.Tensor:
    """Fill `per_name` with each site parameter's kernel share; return the logits [N, O]."""
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch]
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
    outputs = None
    try:
        for name, p in named.items():  # differentiate exactly the selected parameters' modules
            p.requires_grad_(name in selected)
        with torch.no_grad():
            outputs = forward(buckets[0][1]).shape[1]
        logits = None
        for group in layerwise.group_sites(sites, tokens, outputs, max_bytes):
            logits = layerwise.record_pass(forward, buckets, group)
            for site in group:
                per_name.update(layerwise.site_kernels(site, n, max_bytes))
    finally:
        for name, p in named.items():
            p.requires_grad_(saved[name])
    return logits


def jacobian_contributions(model, batch, names, per_name, max_jacobian_bytes, sample_function, bucket_size):
    """The chunked torch.func engine (module docstring) for `names`: adds each parameter's kernel
    share [N, O, N, O] to `per_name`; returns (logits [N, O], chunks, details)."""
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
            positions = {}
            for i, p in enumerate(chunk):
                if p.rows is not None:
                    slot = torch.full((all_params[p.name].shape[0],), -1, dtype=torch.long)
                    slot[p.rows] = torch.arange(len(p.rows))
                    positions[i] = slot

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
                share = original_order((j @ j.T).double())
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


def naive_ntk(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    names: Sequence[str] | None = None,
    *,
    group_of: GroupFn = head_or_body,
) -> NTKResult:
    """Brute force: for each sample (unpadded, its own forward) and each logit, one backward
    pass; the N·O flat gradients are stacked into G and K = G Gᵀ. Memory N·O·P."""
    started = time.perf_counter()
    model.eval()
    use_eager_attention(model)
    names = list(names) if names is not None else trainable_names(model)
    named = dict(model.named_parameters())
    params = [named[n] for n in names]
    saved = {n: p.requires_grad for n, p in named.items()}
    for n, p in named.items():
        p.requires_grad_(n in set(names))
    can_measure = reset_peak_rss()
    baseline = current_rss_bytes()
    rows, logits_rows = [], []
    try:
        for i in range(batch["input_ids"].shape[0]):
            length = int(batch["attention_mask"][i].sum())
            kwargs = {k: batch[k][i : i + 1, :length] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
            logits = model(**kwargs).logits[0]
            logits_rows.append(logits.detach())
            for a in range(logits.shape[0]):
                grads = torch.autograd.grad(logits[a], params, retain_graph=a + 1 < logits.shape[0], allow_unused=True)
                rows.append([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
    finally:
        for n, p in named.items():
            p.requires_grad_(saved[n])
    n_samples, o = len(logits_rows), logits_rows[0].shape[0]
    groups: dict[str, torch.Tensor] = {}
    for k, name in enumerate(names):
        g = torch.stack([r[k].reshape(-1) for r in rows])
        contribution = (g @ g.T).double()
        group = group_of(name)
        groups[group] = groups[group] + contribution if group in groups else contribution
    peak = peak_rss_bytes() if can_measure else None
    counts: dict[str, int] = {}
    for name, p in zip(names, params):
        counts[group_of(name)] = counts.get(group_of(name), 0) + p.numel()
    kernel = sum(groups.values())
    return NTKResult(
        kernel=kernel.reshape(n_samples, o, n_samples, o),
        groups={g: k.reshape(n_samples, o, n_samples, o) for g, k in groups.items()},
        parameters=counts,
        logits=torch.stack(logits_rows).double(),
        chunks=1,
        seconds=time.perf_counter() - started,
        peak_rss_increase_bytes=(peak - baseline) if (peak is not None and baseline is not None) else None,
        jacobian_chunk_bytes=4 * n_samples * o * sum(p.numel() for p in params),
    )
