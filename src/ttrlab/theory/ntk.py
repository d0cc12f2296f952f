"""Empirical neural tangent kernel (paper Eq. 6) over the *trainable* parameters of a method.

    K(x, x')[a, b] = ∇θ F_a(x)ᵀ ∇θ F_b(x')        (one entry per pair of output logits a, b)

for a batch of N inputs this is an (N·O) × (N·O) matrix, returned as a tensor [N, O, N, O].
θ is the set of parameters a fine-tuning method trains: every parameter for FF; LoRA's A, B and
the classification head for LoRA (the head is a separate *group*, so "adapters only" and "with
head" both come out of one computation: the kernel is a sum over parameters, hence over groups).

This module is the public surface; the machinery is private, in `ttrlab/theory/_src/`:
`layerwise.py` and `jacobian.py` (the two engines), `reference.py` (the brute force behind
`naive_ntk`), `hf.py` (the Hugging Face adapter), `precision.py` (autocast and dtypes),
`memory.py` (peak-RSS probes).

Engines (`empirical_ntk(engine=...)`), and when each wins — like neural-tangents'
`NtkImplementation`, three ways to one kernel, each checked against the brute force:

* 'layerwise': a Linear's per-sample gradient is Σ_t δ_t a_tᵀ, so its share of K(x, x′) is
  Σ_{t,u} (δ_t·δ′_u)(a_t·a′_u) (the "ghost" trick of DP-SGD, for every pair of samples), or the
  explicit per-sample gradients where those are cheaper; LayerNorm and biases are per-sample
  sums, embeddings a ghost form on token equality. One batched forward with hooks and one
  backward record a and δ of every layer at once: no per-sample Jacobian, memory O(N·tokens·width),
  never N·P. Wins wherever it applies, and by most where P is large: FF on MiniLM, N = 64,
  3.0 s / 510 MB against 16.5 s / 1.5 GB (Jacobian) and 60.6 s / 17 GB (naive)
  (`benchmarks/ntk.py`; its table is in benchmarks/README.md). It handles exact nn.Linear / nn.LayerNorm / nn.Embedding weights and
  biases used through their own module's forward (all of a BERT-family encoder and peft's LoRA),
  nothing else, and only the model's own batched forward (no `sample_function`).
* 'jacobian' ("jacobian contraction"): `vmap` over samples of `jacrev` of one sample's logits,
  parameters cut into chunks whose Jacobian fits `max_jacobian_bytes`, each contracted into K and
  freed. Any parameter, any per-sample function; one forward/backward per chunk plus the
  (N·O)²·P contraction, so it loses to the layer-wise engine as P grows (FF, above) and comes
  close when P is small (LoRA N = 64: 1.70 s vs 1.24 s: every engine pays the frozen body's
  forward and backward). It is the engine for what the layer-wise one cannot see: other
  parameter owners, tied weights, weights used outside their module, custom sample functions.
* 'auto' (default): the layer-wise route for every parameter it supports, the Jacobian one for
  the rest; exact, since the kernel is a sum over parameters. `details["engine"]` counts each.
* `naive_ntk`: one backward per sample and logit, all N·O gradients stacked (memory N·O·P). The
  reference for tests and the benchmark's baseline; for a handful of LoRA parameters it is on par
  (N = 16: 0.61 s vs 0.55 s), for FF 15–20× slower than the layer-wise engine.

Device: the kernel is computed where the model and the batch are (the caller puts them on one
device); every tensor the engines create goes there, and `NTKResult.kernel`, `.groups` and
`.logits` stay there (float64).

Precision: called inside `torch.autocast` (a bf16/fp16 run, `Runtime.autocast`), the model's
forward and backward passes run under it — the kernel is that of the model as the run computes
it — while every contraction runs without autocast in float32 and is accumulated in float64
(`_src/precision.py`: why, and why not float64 contractions). Both engines and `auto` work so;
fp32 (no autocast) is plain float32 arithmetic, nothing cast. For MiniLM
with LoRA on four sentences the bf16 kernel differs from the fp32 one by 1.8e-3–3.8e-3 of its
largest entry per group (both engines; fp16 2e-4–9e-4): one bf16 round-off (2⁻⁸) of the forward.

Side effects: the model is put in eval mode (dropout off) and stays there. HF models inside run
eager attention during the call (sdpa's CPU kernel has no vmap rule; HF's mask builder branches
on data), and get back the attention implementation each had afterwards (`_src/hf.py`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ttrlab.core.errors import UserError
from ttrlab.theory._src import jacobian, layerwise, reference
from ttrlab.theory._src.hf import DEFAULT_BUCKET_SIZE, SampleFunction, eager_attention
from ttrlab.theory._src.memory import PeakRSS

GroupFn = Callable[[str], str]

ENGINES = ("auto", "layerwise", "jacobian")
HEAD_MARKERS = ("classifier", "score")
ADAPTER_PREFIXES = ("lora_", "ia3_")  # peft's tuner prefixes of the methods theory runs take
DEFAULT_JACOBIAN_BYTES = 1024 * 2**20


# ---- which parameters ------------------------------------------------------------------------
def head_or_body(name: str) -> str:
    """Group of a parameter: 'head' for the classification head (BERT `classifier`, GPT `score`),
    'adapters' for peft's adapter parameters (LoRA's, DoRA's, AdaLoRA's `lora_*`, (IA)³'s `ia3_l`),
    else 'body'."""
    parts = name.split(".")
    if any(p in HEAD_MARKERS for p in parts):
        return "head"
    if any(p.startswith(ADAPTER_PREFIXES) for p in parts):
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


# ---- the kernel ------------------------------------------------------------------------------
@dataclass
class NTKResult:
    """kernel: [N, O, N, O] float64 over all selected parameters; groups: the same per parameter
    group ('head', 'adapters', 'body'), summing to `kernel`; logits: [N, O] at θ (float64). All
    on the device the model and batch are on."""

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
    """The empirical NTK of `model` on `batch` (a padded batch from `ttrlab.training.loop.collate`, on
    the model's device) over the parameters `names` (default: those with requires_grad).

    engine: 'layerwise', 'jacobian' or 'auto' (default; the module docstring compares them).
    max_jacobian_bytes bounds one Jacobian chunk or one layer-wise pass's records; bucket_size is
    the number of samples per vmapped Jacobian / batched forward. sample_function (f, input keys)
    replaces the HF adapter (Jacobian engine only). Under `torch.autocast` the forward and
    backward passes follow it, the contractions do not (module docstring)."""
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

    per_name: dict[str, torch.Tensor] = {}
    logits, chunks, details = None, 0, {}
    with eager_attention(model), PeakRSS() as memory:
        if sites:
            logits = layerwise.contributions(model, batch, sites, per_name, max_jacobian_bytes, bucket_size)
        # → the Jacobian engine: unsupported parameters, and those of a module the forward never
        # called (its weight is used some other way)
        rest = [n for n in names if n not in per_name]
        if rest and engine == "layerwise":
            raise UserError(f"engine 'layerwise': parameter(s) {rest[:3]} are not used through their module's forward (use engine 'auto')")
        if rest:
            logits_j, chunks, details = jacobian.contributions(
                model, batch, rest, per_name, max_jacobian_bytes, sample_function, bucket_size)
            logits = logits if logits is not None else logits_j
    n, o = logits.shape
    return _result(
        per_name, names, all_params, group_of, logits, started, memory,
        chunks=chunks,
        jacobian_chunk_bytes=4 * n * o * max(1, max_jacobian_bytes // (4 * n * o)) if rest else 0,
        details={"engine": {"layerwise": len(names) - len(rest), "jacobian": len(rest)}, **details},
    )


def naive_ntk(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    names: Sequence[str] | None = None,
    *,
    group_of: GroupFn = head_or_body,
) -> NTKResult:
    """Brute force: for each sample (unpadded, its own forward) and each logit, one backward
    pass; the N·O flat gradients are stacked into G and K = G Gᵀ. Memory N·O·P (`_src/reference.py`)."""
    started = time.perf_counter()
    model.eval()
    names = list(names) if names is not None else trainable_names(model)
    all_params = dict(model.named_parameters())
    with eager_attention(model), PeakRSS() as memory:
        per_name, logits = reference.per_parameter_kernels(model, batch, names)
    n, o = logits.shape
    return _result(per_name, names, all_params, group_of, logits, started, memory,
                   chunks=1, jacobian_chunk_bytes=4 * n * o * sum(all_params[name].numel() for name in names))


def _result(per_name: dict[str, torch.Tensor], names: list[str], all_params: dict[str, torch.Tensor], group_of: GroupFn,
            logits: torch.Tensor, started: float, memory: PeakRSS, **rest) -> NTKResult:
    """The NTKResult of per-parameter shares: summed per group in module order (so every engine
    forms its sums in the same order), and the groups summed into the kernel."""
    groups: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for name in names:
        group = group_of(name)
        groups[group] = groups[group] + per_name[name] if group in groups else per_name[name]
        counts[group] = counts.get(group, 0) + all_params[name].numel()
    return NTKResult(kernel=sum(groups.values()), groups=groups, parameters=counts, logits=logits.detach().double(),
                     seconds=time.perf_counter() - started, peak_rss_increase_bytes=memory.increase, **rest)
