"""Fisher information (paper Eq. 8) through the NTK, and its spectrum by the dual Gram matrix.

With gᵢ = ∇θ L(xᵢ, yᵢ) the per-sample loss gradient and rᵢ = ∇_F L = softmax(F(xᵢ)) − e_{yᵢ}
(cross-entropy, Eq. 23 of the paper, there written only for the true-class entry), the chain
rule gives gᵢ = Jᵢᵀ rᵢ and therefore

    gᵢᵀ gⱼ = rᵢᵀ K(xᵢ, xⱼ) rⱼ                        (Theorem 2.2, Eq. 21, exact at finite width)

The Fisher information of the paper is the *empirical* Fisher over the (poisoned) sample,
I = (1/N) Σᵢ gᵢ gᵢᵀ (a P × P matrix; labels are the data's, not sampled from the model). Its
nonzero eigenvalues equal those of the N × N Gram matrix G/N, Gᵢⱼ = gᵢᵀ gⱼ (the dual: I = Γᵀ Γ
and G/N = Γ Γᵀ with Γ = [gᵢ]/√N share their nonzero spectrum). So one NTK of the sample gives
the whole nonzero Fisher spectrum without ever forming a P × P matrix.

Departure from the paper: Eq. 8 writes the trace-like scalar ∇Lᵀ∇L inside the expectation; we
take the matrix gᵢgᵢᵀ (the Fisher *matrix*, whose eigenvalues Eq. 9 needs).

Device: the Gram and its eigenvalues are computed where the kernel is (an NTK stays on the run's
device); labels are moved there; only the N eigenvalues come back to the host, as numpy.
"""
from __future__ import annotations

import numpy as np
import torch


def output_gradients(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """rᵢ = ∂L/∂F(xᵢ) = softmax(F(xᵢ)) − one_hot(yᵢ) for the cross-entropy loss, [N, O]."""
    probabilities = torch.softmax(logits.double(), dim=-1)
    labels = torch.as_tensor(labels, device=logits.device).long()
    return probabilities - torch.nn.functional.one_hot(labels, probabilities.shape[-1]).double()


def loss_gradient_gram(kernel: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gᵢⱼ = ∇θL(xᵢ)ᵀ ∇θL(xⱼ) = rᵢᵀ K(xᵢ, xⱼ) rⱼ from an NTK [N, O, N, O]."""
    r = output_gradients(logits, labels)
    return torch.einsum("ia,iajb,jb->ij", r, kernel.double(), r)


def fisher_eigenvalues(kernel: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """All N eigenvalues of G/N, descending: the nonzero spectrum of the empirical Fisher I
    (the remaining P − N eigenvalues of I are zero)."""
    gram = loss_gradient_gram(kernel, logits, labels) / kernel.shape[0]
    eigenvalues = torch.linalg.eigvalsh((gram + gram.T) / 2)
    return np.sort(eigenvalues.cpu().numpy())[::-1].copy()


def primal_fisher_eigenvalues(per_sample_gradients: torch.Tensor) -> np.ndarray:
    """Reference for tests: eigenvalues of the P × P matrix (1/N) Σ gᵢgᵢᵀ, descending."""
    g = per_sample_gradients.double()
    fisher = g.T @ g / g.shape[0]
    return np.sort(torch.linalg.eigvalsh(fisher).cpu().numpy())[::-1].copy()
