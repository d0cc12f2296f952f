"""Theorem 3.4 (the spectrum of AᵀA for LoRA's A at init) and the H′_α map of Figure 3 (Eq. 18).

A ∈ ℝ^{r×n} is drawn by a ttrlab init strategy (`ttrlab.methods.INIT_STRATEGIES`, the same code
that initialises real LoRA runs) with Var(A) = σ² = k/n. AᵀA (n × n) has the r eigenvalues of
AAᵀ plus n − r zeros (r ≤ n). What the paper states and what is true:

* Theorem 3.4 states that M_Δ = AᵀA − I has "r eigenvalues equal to σ²·n and n − r eigenvalues
  equal to 0". Those are (approximately) the eigenvalues of AᵀA, not of M_Δ: M_Δ has the r
  eigenvalues λᵢ(AᵀA) − 1 and n − r eigenvalues equal to −1. The statement mixes the two
  matrices; its own proof (Appendix A.4) computes the spectrum of AᵀA.
* The proof also says rank ≤ r leaves "at most n − r nonzero eigenvalues"; it is at most r.
* The r nonzero eigenvalues are not ≈ σ²n unless r/n → 0. For finite r/n they follow the
  Marchenko–Pastur law: they fill [σ²(√n − √r)², σ²(√n + √r)²] (mean σ²n, as the proof's trace
  argument gives). So σ² < 1/n is *not* sufficient for M_Δ ⪯ 0: that needs
  σ²(√n + √r)² ≤ 1, i.e. k ≤ 1/(1 + √(r/n))².
* peft scales the adapter by s = α/r (W + s·BA), so the kernel the NTK sees is s²·AᵀA, and the
  negative semi-definiteness that Theorem 3.3/3.6 use needs s²·λ_max(AᵀA) ≤ 1. With peft's
  defaults (kaiming k = 1/3, α = 16, r = 8, s² = 4) this fails.

`theorem_3_4_check` measures all of this for one (strategy, r, n, k); `h_prime_map` computes the
Figure 3 grid.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ttrlab.methods import INIT_STRATEGIES, KAIMING_DEFAULT_K
from ttrlab.theory.information import renyi_entropy

FIG3_RANKS: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256, 512)


def draw_a(strategy: str, rank: int, fan_in: int, scale: float | None, seed: int) -> tuple[torch.Tensor, float]:
    """(A [r, n] in float64, the variance σ² used), drawn exactly as a LoRA run draws it."""
    a = torch.empty(rank, fan_in)
    variance = INIT_STRATEGIES.get(strategy).fill_(a, scale, torch.Generator().manual_seed(seed))
    return a.double(), variance


def ata_eigenvalues(a: torch.Tensor) -> np.ndarray:
    """All n eigenvalues of AᵀA, descending (via the smaller of AAᵀ and AᵀA; the rest are 0)."""
    rank, fan_in = a.shape
    small = a @ a.T if rank <= fan_in else a.T @ a
    nonzero = torch.linalg.eigvalsh(small).clamp(min=0.0).numpy()
    eigenvalues = np.concatenate([nonzero, np.zeros(max(0, fan_in - rank))])
    return np.sort(eigenvalues)[::-1].copy()


def marchenko_pastur_bounds(rank: int, fan_in: int, variance: float) -> tuple[float, float]:
    """Support of the nonzero eigenvalues of AᵀA for iid entries of variance σ²:
    [σ²(√n − √r)², σ²(√n + √r)²] (the Marchenko–Pastur edges, in the limit r, n → ∞)."""
    return variance * (math.sqrt(fan_in) - math.sqrt(rank)) ** 2, variance * (math.sqrt(fan_in) + math.sqrt(rank)) ** 2


def marchenko_pastur_density(x: np.ndarray, rank: int, fan_in: int, variance: float) -> np.ndarray:
    """Density of the nonzero eigenvalues of AᵀA (normalised over the min(r, n) of them)."""
    big, small = max(rank, fan_in), min(rank, fan_in)
    c = small / big
    unit = big * variance  # λ = unit · y with y Marchenko–Pastur(c) of variance 1
    y = np.asarray(x, dtype=np.float64) / unit
    lo, hi = (1 - math.sqrt(c)) ** 2, (1 + math.sqrt(c)) ** 2
    inside = (y > lo) & (y < hi)
    density = np.zeros_like(y)
    density[inside] = np.sqrt((hi - y[inside]) * (y[inside] - lo)) / (2 * math.pi * c * y[inside])
    return density / unit


def theorem_3_4_check(
    strategy: str,
    rank: int,
    fan_in: int,
    scale: float | None = None,
    seed: int = 0,
    lora_scaling: float = 1.0,
) -> dict:
    """Measured spectrum of AᵀA and M_Δ for one init against the theorem and against
    Marchenko–Pastur. `lora_scaling` is s = α/r (1 = the theorem's own setting)."""
    a, variance = draw_a(strategy, rank, fan_in, scale, seed)
    eigenvalues = ata_eigenvalues(a)
    k = min(rank, fan_in)
    nonzero = eigenvalues[:k]
    low, high = marchenko_pastur_bounds(rank, fan_in, variance)
    effective_max = lora_scaling**2 * float(nonzero.max())
    conditions = variance < 1.0 / fan_in and rank <= fan_in
    return {
        "strategy": strategy,
        "rank": rank,
        "fan_in": fan_in,
        "scale_k": variance * fan_in,
        "variance": variance,
        "seed": seed,
        "theorem_conditions_hold": bool(conditions),  # σ² < 1/n and r ≤ n
        "statement_nonzero_eigenvalue": variance * fan_in,  # "r eigenvalues equal to σ²·n"
        "nonzero_eigenvalues": {
            "count": int((nonzero > 1e-12 * max(1.0, float(nonzero.max()))).sum()),
            "min": float(nonzero.min()),
            "mean": float(nonzero.mean()),
            "max": float(nonzero.max()),
        },
        "zero_eigenvalues": int(fan_in - k),
        "marchenko_pastur": {
            "low": low,
            "high": high,
            "share_inside_5pct": float(((nonzero >= low * 0.95) & (nonzero <= high * 1.05)).mean()),
        },
        "m_delta": {
            # the true spectrum of M_Δ = AᵀA − I (the theorem's statement gives AᵀA's instead)
            "max_eigenvalue": float(nonzero.max()) - 1.0,
            "min_eigenvalue": float(eigenvalues.min()) - 1.0,
            "eigenvalues_equal_minus_one": int(fan_in - k),
            "negative_semidefinite": bool(nonzero.max() <= 1.0),
            "mp_predicts_negative_semidefinite": bool(high <= 1.0),
        },
        "with_lora_scaling": {
            "s": lora_scaling,
            "max_eigenvalue_s2_ata": effective_max,
            "negative_semidefinite": bool(effective_max <= 1.0),
        },
        "statement_vs_measured": {
            "relative_spread": float((nonzero.max() - nonzero.min()) / nonzero.mean()),
            "max_over_statement": float(nonzero.max() / (variance * fan_in)),
            "min_over_statement": float(nonzero.min() / (variance * fan_in)),
        },
    }


def h_prime(eigenvalues: np.ndarray, alpha: float, normalized: bool) -> float:
    """H′_α of Eq. 18 on the eigenvalues of AᵀA (zeros excluded: 0^α = 0, 0·log 0 = 0)."""
    return renyi_entropy(eigenvalues, alpha, normalized=normalized, relative_eps=1e-12)


def h_prime_map(
    ranks: Sequence[int] = FIG3_RANKS,
    scales: Sequence[float] | None = None,
    fan_in: int = 1024,
    alpha: float = 1.0,
    strategy: str = "kaiming_uniform",
    seed: int = 0,
) -> dict:
    """The Figure 3 grid: H′_α(r, k) for every rank r and variance scale k (Var = k/n), both
    normalized and literal. One A per rank (seeded); A for scale k is the same draw scaled by
    √k, exactly as a LoRA init with that scale would be (so the normalized spectrum, hence
    normalized H′, does not depend on k at all: only the literal variant varies along k)."""
    scales = list(scales) if scales is not None else list(np.geomspace(1e-3, 2.0, 41))
    normalized = np.zeros((len(ranks), len(scales)))
    literal = np.zeros((len(ranks), len(scales)))
    for i, rank in enumerate(ranks):
        unit = ata_eigenvalues(draw_a(strategy, rank, fan_in, 1.0, seed + rank)[0])  # k = 1
        for j, k in enumerate(scales):
            eigenvalues = k * unit  # the draw at scale k is √k · (the draw at k = 1)
            normalized[i, j] = h_prime(eigenvalues, alpha, True)
            literal[i, j] = h_prime(eigenvalues, alpha, False)
    return {
        "ranks": list(ranks),
        "scales": [float(k) for k in scales],
        "fan_in": fan_in,
        "alpha": alpha,
        "strategy": strategy,
        "seed": seed,
        "default_scale": KAIMING_DEFAULT_K,
        "normalized": normalized.tolist(),
        "literal": literal.tolist(),
    }
