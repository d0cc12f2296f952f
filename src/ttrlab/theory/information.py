"""Information bits (paper Eq. 9) and Rényi entropy (Eq. 10) of an eigenvalue spectrum.

Information bits. The paper defines IB = ½ log pdet I and then writes it as ½ Σ_{λᵢ>0} λᵢ: the
second expression drops the log (it is half the trace, not half the log pseudo-determinant), and
the proof of Theorem 3.6 (Eq. 42) uses the trace form. Both are here, named for what they are:

* `information_bits_logdet`  = ½ Σ_{λᵢ>ε} log λᵢ    (the definition, ½ log pdet; in nats)
* `information_bits_paper`   = ½ Σ_{λᵢ>ε} λᵢ        (the formula the paper's text computes)

ε is explicit: eigenvalues at or below it count as zero (a computed spectrum of a rank-deficient
matrix has round-off eigenvalues around 1e-7·λ_max in float32, whose logs would dominate).

Rényi entropy, H_α = 1/(1−α) · log Σᵢ pᵢ^α, in two variants:

* normalized (the textbook definition, Appendix C.1): pᵢ = λᵢ / Σλ over the eigenvalues > ε;
  α = 1 is the Shannon limit −Σ pᵢ log pᵢ, α = ∞ the min-entropy −log max pᵢ, α = 0 log(rank).
* literal (Eq. 10 as printed): raw λᵢ in place of pᵢ. Its α → 1 limit exists only when
  Σλ = 1 (otherwise 1/(1−α) · log Σλ diverges); at α = 1 we report Eq. 56 applied to the raw
  eigenvalues, −Σ λᵢ log λᵢ, which is what the paper's Fig. 3 computes. Its α → ∞ limit is
  −log λ_max; the paper's text says "H_∞ = max λ", which is neither limit (stated, not used).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

ALPHAS: tuple[float, ...] = (0.5, 1.0, 2.0, math.inf)
DEFAULT_RELATIVE_EPS = 1e-6


def as_spectrum(eigenvalues) -> np.ndarray:
    """Eigenvalues (a sequence, a numpy array or a torch tensor on any device) as a flat float64
    numpy array on the host."""
    if hasattr(eigenvalues, "detach"):  # a torch tensor, possibly on a GPU
        eigenvalues = eigenvalues.detach().cpu().double().numpy()
    return np.asarray(eigenvalues, dtype=np.float64).ravel()


def positive_spectrum(eigenvalues, eps: float | None = None, relative_eps: float = DEFAULT_RELATIVE_EPS) -> np.ndarray:
    """The eigenvalues > ε, as float64. ε defaults to `relative_eps` · λ_max (0 for an all-zero
    spectrum)."""
    lam = as_spectrum(eigenvalues)
    threshold = spectrum_threshold(lam, eps, relative_eps)
    return lam[lam > threshold]


def spectrum_threshold(eigenvalues, eps: float | None = None, relative_eps: float = DEFAULT_RELATIVE_EPS) -> float:
    lam = as_spectrum(eigenvalues)
    if eps is not None:
        if eps < 0:
            raise ValueError(f"eps {eps} must be >= 0")
        return float(eps)
    top = float(lam.max()) if lam.size else 0.0
    return max(top, 0.0) * relative_eps


def information_bits_logdet(eigenvalues, eps: float | None = None, relative_eps: float = DEFAULT_RELATIVE_EPS) -> float:
    """½ Σ_{λᵢ>ε} ln λᵢ = ½ ln pdet I (Eq. 9, first expression), in nats; 0 for an empty spectrum."""
    lam = positive_spectrum(eigenvalues, eps, relative_eps)
    return float(0.5 * np.log(lam).sum())


def information_bits_paper(eigenvalues, eps: float | None = None, relative_eps: float = DEFAULT_RELATIVE_EPS) -> float:
    """½ Σ_{λᵢ>ε} λᵢ (Eq. 9 as its text evaluates it: half the trace; no log)."""
    lam = positive_spectrum(eigenvalues, eps, relative_eps)
    return float(0.5 * lam.sum())


def renyi_entropy(
    eigenvalues,
    alpha: float,
    *,
    normalized: bool = True,
    eps: float | None = None,
    relative_eps: float = DEFAULT_RELATIVE_EPS,
) -> float:
    """H_α of the spectrum (natural log). See the module docstring for the two variants and
    their α = 1 and α = ∞ limits. NaN for an empty spectrum."""
    if alpha < 0 or (isinstance(alpha, float) and math.isnan(alpha)):
        raise ValueError(f"alpha {alpha} must be >= 0")
    lam = positive_spectrum(eigenvalues, eps, relative_eps)
    if lam.size == 0:
        return math.nan
    p = lam / lam.sum() if normalized else lam
    if alpha == 0:  # both variants: log of the number of eigenvalues > ε
        return float(math.log(p.size))
    if alpha == 1:
        return float(-(p * np.log(p)).sum())
    if math.isinf(alpha):
        return float(-math.log(p.max()))
    # log Σ p^α computed stably as logsumexp(α log p)
    logs = alpha * np.log(p)
    top = logs.max()
    return float((top + math.log(np.exp(logs - top).sum())) / (1.0 - alpha))


def alpha_label(alpha: float) -> str:
    return "inf" if math.isinf(alpha) else f"{alpha:g}"


def summarize_spectrum(
    eigenvalues,
    *,
    eps: float | None = None,
    relative_eps: float = DEFAULT_RELATIVE_EPS,
    alphas: Iterable[float] = ALPHAS,
) -> dict[str, float]:
    """Every scalar of this module for one spectrum, flat (JSON and sweep metrics)."""
    lam = as_spectrum(eigenvalues)
    threshold = spectrum_threshold(lam, eps, relative_eps)
    kept = lam[lam > threshold]
    out: dict[str, float] = {
        "eps": threshold,
        "rank": int(kept.size),
        "trace": float(kept.sum()),
        "lambda_max": float(kept.max()) if kept.size else 0.0,
        "ib_logdet": information_bits_logdet(lam, eps=threshold),
        "ib_paper": information_bits_paper(lam, eps=threshold),
    }
    for alpha in alphas:
        label = alpha_label(alpha)
        out[f"renyi_{label}_normalized"] = renyi_entropy(lam, alpha, normalized=True, eps=threshold)
        out[f"renyi_{label}_literal"] = renyi_entropy(lam, alpha, normalized=False, eps=threshold)
    return out
