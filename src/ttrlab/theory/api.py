"""Theory on a real model: one `TheoryConfig` → one JSON-able result document.

    TheoryConfig → load task → sample N examples → attack (pairs + poisoned sample)
                 → method.prepare (untrained: θ at initialisation, as the paper's NTK analysis)
                 → empirical NTK over the method's trainable parameters
                 → NTK traces, M′ (Eq. 7), |∇Lᵀ∇L| (Eqs. 16–17), Fisher spectrum (Eq. 8),
                   IB (Eq. 9), H_α (Eq. 10)

Samples (all drawn from `seed`):
* clean: N examples of the (train_size subset of the) training split;
* pairs for M′ and Eqs. 16–17: each clean example and its poisoned version (the attack applied
  to every one of the N: UPA flips the label, the input is unchanged; BPA inserts the trigger and
  sets the target label). M′ only sees inputs, so for UPA it equals ‖E K(x, x)‖: Eq. 7 cannot see
  a label flip (the paper says as much in Section 2.4); Eq. 17's gradient product can.
* Fisher sample: the N clean examples poisoned by the attack at the config's rate (a sample of the
  poisoned training set D̃).
The NTK is computed once over the distinct inputs of all three.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ttrlab.config import RunConfig
from ttrlab.errors import UserError, did_you_mean
from ttrlab.theory.fisher import fisher_eigenvalues, loss_gradient_gram
from ttrlab.theory.information import DEFAULT_RELATIVE_EPS, summarize_spectrum
from ttrlab.theory.ntk import empirical_ntk

THEORY_SCHEMA_VERSION = 1
QUANTITIES = ("all", "ntk", "fisher", "spectrum")
_SAMPLE_STREAM, _PAIR_STREAM, _FISHER_STREAM = 11, 12, 13
# RunConfig fields that only shape training, not the model at θ₀ nor the data: left out of the key.
TRAINING_ONLY = ("lr", "lr_preset", "batch_size", "max_steps", "warmup_ratio", "weight_decay",
                 "max_grad_norm", "length_bucketing", "eval_batch_size", "eval_size")


@dataclass
class TheoryConfig:
    """A RunConfig (what model, method, init, attack, data) plus what to compute."""

    run: RunConfig = field(default_factory=RunConfig)
    quantity: str = "all"  # all | ntk | fisher (need the model) | spectrum (Thm 3.4 / Eq. 18 only)
    n: int = 64  # samples
    max_jacobian_mb: int = 1024  # memory budget of one Jacobian chunk or one layer-wise pass
    relative_eps: float = DEFAULT_RELATIVE_EPS  # eigenvalues <= eps·λ_max count as zero
    keep_kernels: bool = False  # put the full N·O × N·O kernel into the result
    fan_in: int | None = None  # spectrum: n of A ∈ R^{r×n}; None = the model's hidden size

    THEORY_KEYS = ("quantity", "n", "max_jacobian_mb", "relative_eps", "keep_kernels", "fan_in")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TheoryConfig:
        run_keys = {f.name for f in fields(RunConfig)}
        allowed = run_keys | set(cls.THEORY_KEYS)
        for key in values:
            if key not in allowed:
                raise UserError(f"unknown theory config key {key!r}{did_you_mean(key, allowed)}; allowed: {', '.join(sorted(allowed))}")
        run = RunConfig.from_dict({k: v for k, v in values.items() if k in run_keys})
        theory: dict[str, Any] = {}
        for key in cls.THEORY_KEYS:
            if key in values:
                theory[key] = values[key]
        config = cls(run=run, **theory)
        config.n = _as_int("n", config.n)
        config.max_jacobian_mb = _as_int("max_jacobian_mb", config.max_jacobian_mb)
        if isinstance(config.relative_eps, bool) or not isinstance(config.relative_eps, (int, float)):
            raise UserError(f"relative_eps must be a number, got {config.relative_eps!r}")
        config.relative_eps = float(config.relative_eps)
        if config.fan_in is not None:
            config.fan_in = _as_int("fan_in", config.fan_in)
        return config

    def validate(self) -> TheoryConfig:
        self.run.validate()
        if self.quantity not in QUANTITIES:
            raise UserError(f"unknown theory quantity {self.quantity!r}{did_you_mean(self.quantity, QUANTITIES)}; allowed: {', '.join(QUANTITIES)}")
        if self.n < 2:
            raise UserError(f"n {self.n} must be >= 2")
        if self.max_jacobian_mb < 1:
            raise UserError(f"max_jacobian_mb {self.max_jacobian_mb} must be >= 1")
        if self.fan_in is not None and self.fan_in < 1:
            raise UserError(f"fan_in {self.fan_in} must be >= 1")
        if not (0.0 <= self.relative_eps < 1.0):
            raise UserError(f"relative_eps {self.relative_eps} must be in [0, 1)")
        return self

    def to_dict(self) -> dict[str, Any]:
        out = self.run.to_dict()
        out.update({k: getattr(self, k) for k in self.THEORY_KEYS})
        return out

    def run_key(self) -> str:
        """Hash of everything that changes the result (training-only knobs excluded)."""
        resolved = self.to_dict()
        for name in TRAINING_ONLY:
            resolved.pop(name, None)
        resolved.pop("keep_kernels")
        resolved.pop("max_jacobian_mb")  # memory budget: same numbers
        resolved.pop("data_dir", None)  # where the data lies does not change the run
        if self.quantity != "spectrum":
            resolved.pop("fan_in")
        if self.run.method == "ff":
            for name in ("rank", "alpha", "lora_dropout", "target_modules", "init", "init_scale"):
                resolved.pop(name)
        blob = json.dumps({"kind": "theory", **resolved}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _as_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise UserError(f"{name} must be an integer, got {value!r}")
    return int(value)


# ---- samples ---------------------------------------------------------------------------------
@dataclass
class TheorySamples:
    clean: list  # N Examples
    paired: list  # their poisoned versions (attack at rate 1), same order
    fisher: list  # the N clean examples poisoned at the config's rate
    fisher_poisoned: int


def draw_samples(config: TheoryConfig, train_examples: list) -> TheorySamples:
    from ttrlab.attacks import build_attack

    run = config.run
    if len(train_examples) < config.n:
        raise UserError(f"n {config.n} is larger than the {len(train_examples)} training examples available")
    rng = np.random.default_rng([run.seed, _SAMPLE_STREAM])
    chosen = np.sort(rng.choice(len(train_examples), size=config.n, replace=False))
    clean = [train_examples[i] for i in chosen]
    every = build_attack(run.replace(rate=1.0)).poison(clean, np.random.default_rng([run.seed, _PAIR_STREAM]))
    at_rate = build_attack(run).poison(clean, np.random.default_rng([run.seed, _FISHER_STREAM]))
    return TheorySamples(clean, list(every.examples), list(at_rate.examples), at_rate.count)


# ---- measures on a computed kernel -----------------------------------------------------------
def kernel_summary(kernel: torch.Tensor) -> dict[str, float]:
    """Scalars of an NTK [N, O, N, O]: trace of the N·O × N·O matrix, its mean diagonal, the
    trace form Σ_a K_aa (N × N) mean diagonal, Frobenius norm, largest eigenvalue."""
    n, o = kernel.shape[:2]
    matrix = kernel.reshape(n * o, n * o)
    eigenvalues = torch.linalg.eigvalsh((matrix + matrix.T) / 2)
    return {
        "trace": float(matrix.trace()),
        "mean_diagonal": float(matrix.trace() / (n * o)),
        "trace_form_mean_diagonal": float(torch.einsum("iaia->", kernel) / n),
        "frobenius": float(matrix.norm()),
        "lambda_max": float(eigenvalues.max()),
        "lambda_min": float(eigenvalues.min()),
    }


def m_prime(kernel: torch.Tensor, left: list[int], right: list[int]) -> dict[str, float]:
    """M′ = ‖E_i K(x_i, x̃_i)‖ (Eq. 7): the mean O × O cross-kernel block over the pairs
    (left[i], right[i]), its Frobenius and spectral norms and its trace."""
    blocks = kernel[left, :, right, :]  # [pairs, O, O]
    mean = blocks.mean(dim=0)
    return {
        "frobenius": float(mean.norm()),
        "spectral": float(torch.linalg.matrix_norm(mean, ord=2)),
        "trace": float(mean.trace()),
    }


def gradient_alignment(kernel: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, left: list[int], right: list[int]) -> dict[str, float]:
    """Eqs. 16–17: |∇θL(x_c)ᵀ ∇θL(x̃)| over the pairs (clean, poisoned), with each side's own label,
    averaged; also the signed mean and the mean cosine."""
    gram = loss_gradient_gram(kernel, logits, labels)
    inner = gram[left, right]
    norms = torch.sqrt(gram.diagonal().clamp(min=0))
    cosine = inner / (norms[left] * norms[right]).clamp(min=1e-300)
    return {
        "mean_abs_inner_product": float(inner.abs().mean()),
        "mean_inner_product": float(inner.mean()),
        "mean_cosine": float(cosine.mean()),
    }


# ---- the pipeline ----------------------------------------------------------------------------
def prepare_model(run: RunConfig, num_labels: int):
    from ttrlab.methods import METHODS
    from ttrlab.models import load_classifier

    tokenizer, model = load_classifier(run.model, num_labels, run.seed)
    prepared = METHODS.get(run.method).prepare(model, run)
    prepared.model.eval()  # dropout off for every theory quantity
    return tokenizer, prepared


def compute_theory(config: TheoryConfig, progress=None, data=None) -> dict[str, Any]:
    """Run one theory config; returns the result document (see docs/theory.md)."""
    from ttrlab.experiment import load_run_data, versions
    from ttrlab.training import collate

    config.validate()
    run = config.run
    if config.quantity == "spectrum":
        return compute_spectrum(config)
    task, train_examples, _ = data if data is not None else load_run_data(run)
    samples = draw_samples(config, train_examples)
    if progress is not None:
        progress("load", model=run.model)
    tokenizer, prepared = prepare_model(run, task.num_labels)

    # distinct inputs over everything needed, then index each role into them
    wanted = []
    if config.quantity in ("all", "ntk"):
        wanted += samples.clean + samples.paired
    if config.quantity in ("all", "fisher"):
        wanted += samples.fisher
    index: dict[tuple, int] = {}
    inputs = []
    for example in wanted:
        if example.texts not in index:
            index[example.texts] = len(inputs)
            inputs.append(example)
    if progress is not None:
        progress("ntk", inputs=len(inputs))
    batch = collate(tokenizer, inputs, run.max_length)
    ntk = empirical_ntk(prepared.model, batch, max_jacobian_bytes=config.max_jacobian_mb * 2**20)
    group_kernels = {"all": ntk.kernel, **ntk.groups}
    if "adapters" in ntk.groups and "head" in ntk.groups:
        group_kernels["adapters_only"] = group_kernels.pop("adapters")
    if "body" in ntk.groups and "head" in ntk.groups:
        group_kernels["body_only"] = group_kernels.pop("body")

    result: dict[str, Any] = {
        "schema_version": THEORY_SCHEMA_VERSION,
        "kind": "theory",
        "run_key": config.run_key(),
        "config": config.to_dict(),
        "versions": versions(),
        "method": {
            "name": run.method,
            "trainable_parameters": prepared.trainable_parameters,
            "total_parameters": prepared.total_parameters,
            "parameter_groups": ntk.parameters,
            **prepared.details,
        },
        "compute": {
            "distinct_inputs": len(inputs),
            "outputs": int(ntk.logits.shape[1]),
            "chunks": ntk.chunks,
            "seconds": round(ntk.seconds, 3),
            "peak_rss_increase_bytes": ntk.peak_rss_increase_bytes,
            "jacobian_chunk_bytes": ntk.jacobian_chunk_bytes,
            **ntk.details,
        },
    }
    metrics: dict[str, float] = {}
    if run.method == "lora":
        scaling = run.alpha / run.rank
        result["method"]["lora_scaling"] = scaling

    def positions(examples):
        return [index[e.texts] for e in examples]

    if config.quantity in ("all", "ntk"):
        clean = positions(samples.clean)
        paired = positions(samples.paired)
        clean_kernels = {g: k[clean][:, :, clean] for g, k in group_kernels.items()}
        labels_left = torch.tensor([e.label for e in samples.clean])
        labels_right = torch.tensor([e.label for e in samples.paired])
        # a kernel over the 2N (clean, poisoned) rows, with each row's own label
        rows = clean + paired
        pair_kernel = ntk.kernel[rows][:, :, rows]
        pair_logits = ntk.logits[rows]
        pair_labels = torch.cat([labels_left, labels_right])
        left, right = list(range(config.n)), list(range(config.n, 2 * config.n))
        result["ntk"] = {
            "n": config.n,
            "groups": {g: kernel_summary(k) for g, k in clean_kernels.items()},
        }
        if config.keep_kernels:
            result["ntk"]["kernel"] = clean_kernels["all"].reshape(config.n * ntk.logits.shape[1], -1).tolist()
        result["m_prime"] = {
            "attack": run.attack,
            "pairs": config.n,
            "identical_inputs": sum(a == b for a, b in zip(clean, paired)),
            "groups": {g: m_prime(k[rows][:, :, rows], left, right) for g, k in group_kernels.items()},
        }
        equation = {"bpa": 16, "upa": 17}.get(run.attack)
        result["gradient_alignment"] = {
            "equation": equation,
            **gradient_alignment(pair_kernel, pair_logits, pair_labels, left, right),
        }
        metrics.update({
            "ntk_trace": result["ntk"]["groups"]["all"]["trace"],
            "ntk_mean_diagonal": result["ntk"]["groups"]["all"]["mean_diagonal"],
            "ntk_lambda_max": result["ntk"]["groups"]["all"]["lambda_max"],
            "m_prime": result["m_prime"]["groups"]["all"]["frobenius"],
            "grad_inner_abs": result["gradient_alignment"]["mean_abs_inner_product"],
            "grad_cosine": result["gradient_alignment"]["mean_cosine"],
        })
        for g in group_kernels:
            if g != "all":
                metrics[f"ntk_trace_{g}"] = result["ntk"]["groups"][g]["trace"]
                metrics[f"m_prime_{g}"] = result["m_prime"]["groups"][g]["frobenius"]

    if config.quantity in ("all", "fisher"):
        rows = positions(samples.fisher)
        labels = torch.tensor([e.label for e in samples.fisher])
        fisher: dict[str, Any] = {"n": config.n, "poisoned_in_sample": samples.fisher_poisoned, "groups": {}}
        for g, k in group_kernels.items():
            eigenvalues = fisher_eigenvalues(k[rows][:, :, rows], ntk.logits[rows], labels)
            fisher["groups"][g] = {
                "eigenvalues": [float(x) for x in eigenvalues],
                **summarize_spectrum(eigenvalues, relative_eps=config.relative_eps),
            }
        result["fisher"] = fisher
        for key, value in fisher["groups"]["all"].items():
            if key != "eigenvalues":
                metrics[f"fisher_{key}"] = value
        for g in group_kernels:
            if g != "all":
                metrics[f"fisher_ib_logdet_{g}"] = fisher["groups"][g]["ib_logdet"]
                metrics[f"fisher_trace_{g}"] = fisher["groups"][g]["trace"]
    result["metrics"] = {k: float(v) for k, v in metrics.items()}
    return result


def model_fan_in(model_name: str) -> int:
    """Hidden size of a model (the fan-in of LoRA's A on query/value), read from its config."""
    from transformers import AutoConfig

    from ttrlab.models import resolve_model

    source, is_local = resolve_model(model_name)
    try:
        return int(AutoConfig.from_pretrained(source, local_files_only=is_local).hidden_size)
    except OSError as error:
        raise UserError(f"cannot read the config of model {model_name!r}: {str(error).splitlines()[0]}") from None


def compute_spectrum(config: TheoryConfig) -> dict[str, Any]:
    """Theorem 3.4 check and H′_α (Eq. 18) for the LoRA init of `config` (no model, no data):
    one point of the Figure 3 map, so a sweep over rank × init_scale rebuilds the figure."""
    from ttrlab.experiment import versions
    from ttrlab.theory.information import ALPHAS, alpha_label
    from ttrlab.theory.spectrum import ata_eigenvalues, draw_a, h_prime, theorem_3_4_check

    run = config.run
    if run.method != "lora":
        raise UserError(f"quantity 'spectrum' is about LoRA's A; got method {run.method!r} (use --method lora)")
    fan_in = config.fan_in or model_fan_in(run.model)
    check = theorem_3_4_check(run.init, run.rank, fan_in, run.init_scale, run.seed, lora_scaling=run.alpha / run.rank)
    eigenvalues = ata_eigenvalues(draw_a(run.init, run.rank, fan_in, run.init_scale, run.seed)[0])
    metrics: dict[str, float] = {
        "scale_k": check["scale_k"],
        "ata_max": check["nonzero_eigenvalues"]["max"],
        "ata_min": check["nonzero_eigenvalues"]["min"],
        "ata_mean": check["nonzero_eigenvalues"]["mean"],
        "m_delta_max": check["m_delta"]["max_eigenvalue"],
        "m_delta_nsd": float(check["m_delta"]["negative_semidefinite"]),
        "m_delta_nsd_with_lora_scaling": float(check["with_lora_scaling"]["negative_semidefinite"]),
        "mp_share_inside": check["marchenko_pastur"]["share_inside_5pct"],
    }
    for alpha in ALPHAS:
        metrics[f"h_prime_{alpha_label(alpha)}_normalized"] = h_prime(eigenvalues, alpha, True)
        metrics[f"h_prime_{alpha_label(alpha)}_literal"] = h_prime(eigenvalues, alpha, False)
    return {
        "schema_version": THEORY_SCHEMA_VERSION,
        "kind": "theory",
        "run_key": config.run_key(),
        "config": {**config.to_dict(), "fan_in": fan_in},
        "versions": versions(),
        "theorem_3_4": check,
        "metrics": metrics,
    }


# ---- Theorem 3.6 on two results --------------------------------------------------------------
def theorem_3_6_check(ff: dict, lora: dict, group: str = "all") -> dict[str, Any]:
    """Does IB_FF ≥ IB_LoRA and H_α,FF ≥ H_α,LoRA hold on measured Fisher spectra (same data,
    sample and seed)? Also the eigenvalue-wise claim of Eq. 41 (sorted λ_LoRA,i ≤ λ_FF,i) and
    whether the theorem's conditions held for the LoRA config (r ≤ n, σ² ≤ 1/n; and the
    stricter s²·λ_max(AᵀA) ≤ 1 that the proof actually needs)."""
    f, l = ff["fisher"]["groups"]["all"], lora["fisher"]["groups"][group]
    comparisons = {}
    for key in f:
        if key.startswith("ib_") or key.startswith("renyi_") or key in ("trace", "lambda_max"):
            if isinstance(f[key], float) and not (math.isnan(f[key]) or math.isnan(l[key])):
                comparisons[key] = {"ff": f[key], "lora": l[key], "holds": bool(f[key] >= l[key])}
    lf, ll = np.array(f["eigenvalues"]), np.array(lora["fisher"]["groups"][group]["eigenvalues"])
    cfg = lora["config"]
    details = lora["method"]
    variance = details.get("init_variance_example", {}).get("variance")
    fan_in = details.get("init_variance_example", {}).get("fan_in")
    return {
        "lora_group": group,
        "comparisons": comparisons,
        "holds_all": all(c["holds"] for c in comparisons.values()),
        "eigenvalue_wise_holds": bool(np.all(ll <= lf + 1e-12 * max(1.0, lf.max()))),
        "eigenvalue_wise_share": float(np.mean(ll <= lf)),
        "conditions": {
            "rank": cfg["rank"],
            "fan_in": fan_in,
            "variance": variance,
            "r_le_n": bool(fan_in is not None and cfg["rank"] <= fan_in),
            "variance_le_1_over_n": bool(variance is not None and fan_in and variance <= 1.0 / fan_in),
        },
    }


def strip_private(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_")}


__all__ = [
    "TheoryConfig",
    "compute_theory",
    "theorem_3_6_check",
    "kernel_summary",
    "m_prime",
    "gradient_alignment",
    "draw_samples",
]
