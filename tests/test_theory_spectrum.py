"""Theorem 3.4: AᵀA spectrum of ttrlab's LoRA inits against the statement and Marchenko–Pastur;
Figure 3 grid."""
import math

import numpy as np
import pytest

from ttrlab.theory.spectrum import (
    ata_eigenvalues,
    draw_a,
    h_prime_map,
    marchenko_pastur_bounds,
    marchenko_pastur_density,
    theorem_3_4_check,
)


@pytest.mark.parametrize("strategy", ["kaiming_uniform", "gaussian", "xavier_normal"])
def test_ata_spectrum_inside_marchenko_pastur_for_large_n(strategy):
    rank, n, k = 300, 1200, 0.5
    a, variance = draw_a(strategy, rank, n, k, seed=4)
    assert variance == pytest.approx(2 * k / (n + rank) if strategy == "xavier_normal" else k / n)
    lam = ata_eigenvalues(a)
    assert len(lam) == n and np.all(lam[rank:] == 0)
    low, high = marchenko_pastur_bounds(rank, n, variance)
    nonzero = lam[:rank]
    assert nonzero.min() >= 0.95 * low and nonzero.max() <= 1.05 * high
    assert nonzero.mean() == pytest.approx(variance * n, rel=0.02)  # the proof's trace argument
    # histogram against the MP density (a loose L1 check, 12 bins)
    hist, edges = np.histogram(nonzero, bins=12, range=(low, high), density=True)
    centers = (edges[:-1] + edges[1:]) / 2
    assert np.abs(hist - marchenko_pastur_density(centers, rank, n, variance)).mean() < 0.25 * hist.mean()


def test_statement_is_only_right_for_small_rank_ratio():
    small = theorem_3_4_check("gaussian", 8, 4096, 0.5, seed=0)
    assert small["statement_vs_measured"]["relative_spread"] < 0.3
    wide = theorem_3_4_check("gaussian", 1024, 4096, 0.5, seed=0)
    assert wide["statement_vs_measured"]["max_over_statement"] > 2.0  # (1 + √(1/4))² = 2.25


def test_conditions_do_not_imply_negative_semidefinite():
    """σ² < 1/n and r ≤ n hold, yet AᵀA − I has a positive eigenvalue (MP edge > 1)."""
    c = theorem_3_4_check("gaussian", 256, 1024, 0.99, seed=0)
    assert c["theorem_conditions_hold"]
    assert not c["m_delta"]["negative_semidefinite"] and c["m_delta"]["max_eigenvalue"] > 0.5
    assert c["m_delta"]["eigenvalues_equal_minus_one"] == 1024 - 256  # not "n − r zeros"
    ok = theorem_3_4_check("kaiming_uniform", 8, 384, None, seed=0, lora_scaling=2.0)
    assert ok["m_delta"]["negative_semidefinite"]
    assert not ok["with_lora_scaling"]["negative_semidefinite"]  # peft default s = 16/8


def test_fig3_normalized_does_not_depend_on_scale_literal_does():
    grid = h_prime_map(ranks=(4, 16, 64), scales=[0.01, 0.3, 1.5], fan_in=128, alpha=1.0)
    normalized, literal = np.array(grid["normalized"]), np.array(grid["literal"])
    assert np.allclose(normalized, normalized[:, :1])
    assert np.all(np.diff(normalized[:, 0]) > 0)  # more rank → more entropy
    assert not np.allclose(literal, literal[:, :1])
    # the literal H′_1 is −Σ λ log λ of the raw eigenvalues
    a, _ = draw_a("kaiming_uniform", 16, 128, 0.3, seed=16)
    lam = ata_eigenvalues(a)
    lam = lam[lam > 0]
    assert literal[1, 1] == pytest.approx(-(lam * np.log(lam)).sum(), rel=1e-4)
    assert grid["default_scale"] == pytest.approx(1 / 3) and math.isfinite(literal.sum())
