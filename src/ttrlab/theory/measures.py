"""Measures on a computed empirical NTK and on Fisher spectra: the kernel's summary, M′ (Eq. 7),
the loss-gradient alignment of Eqs. 16–17, and Theorem 3.6's comparison of an FF and a LoRA
Fisher spectrum on the same sample."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ttrlab.theory.fisher import loss_gradient_gram


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
