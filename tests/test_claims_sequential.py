"""The sequential design's error rates by simulation (numpy, seconds): seeds added look by look
until a claim is decided, as `ttrlab sweep --until-decided` does, must not reject a true null more
often than α — for normal and for heavy-tailed unit values — while testing at α at every look
(peeking without spending) does, and a real effect is still found."""
import numpy as np
import pytest

from ttrlab.report.claims import load_claims
from ttrlab.report.claims.sequential import SequentialDesign
from ttrlab.report.stats import t_p_value

SWEEPS = 20_000  # simulated sweeps per case: the rate's standard error is 0.0015 at 0.05


def rejected(design: SequentialDesign, units: np.ndarray, spend: bool = True) -> np.ndarray:
    """Whether each simulated sweep (a row of unit values, one per seed) is decided at some look:
    looks in order, stopping at the first rejection (what the loop does), p_seq = p / w_look."""
    decided = np.zeros(len(units), dtype=bool)
    for look, seeds in enumerate(design.looks):
        x = units[:, :seeds]
        p = t_p_value(x.mean(axis=1), x.std(axis=1, ddof=1), seeds)
        level = design.level(look) if spend else design.alpha
        decided |= p < level
    return decided


@pytest.mark.parametrize("draw", ["normal", "student_t3", "laplace"])
def test_peeking_with_the_declared_design_keeps_the_error_rate(draw):
    design = load_claims().sequential
    rng = np.random.default_rng(11)
    shape = (SWEEPS, design.max_seeds)
    units = {"normal": lambda: rng.normal(0, 1, shape), "student_t3": lambda: rng.standard_t(3, shape),
             "laplace": lambda: rng.laplace(0, 1, shape)}[draw]()
    rate = rejected(design, units).mean()
    assert rate <= design.alpha, rate
    # the same data tested at α at every look: the error a naive "add seeds until p < 0.05" makes
    assert rejected(design, units, spend=False).mean() > 1.5 * design.alpha


@pytest.mark.parametrize("spending", ["pocock", "obrien_fleming"])
def test_every_spending_function_spends_alpha_once(spending):
    design = SequentialDesign((3, 6, 10, 20), spending)
    assert sum(design.weights()) == pytest.approx(1.0)
    assert all(w > 0 for w in design.weights())
    rng = np.random.default_rng(5)
    assert rejected(design, rng.normal(0, 1, (SWEEPS, 20))).mean() <= design.alpha


def test_a_real_effect_is_decided_within_the_looks():
    design = load_claims().sequential
    rng = np.random.default_rng(3)
    units = rng.normal(1.0, 1.0, (4000, design.max_seeds))  # the effect is one seed-to-seed sd
    assert rejected(design, units).mean() > 0.8


def test_the_first_look_needs_the_declared_seeds():
    design = SequentialDesign((3, 6, 10, 20))
    assert design.look_at(2) is None and design.look_at(3) == 0 and design.look_at(9) == 1 and design.look_at(25) == 3
    assert design.adjust(0.01, 0) == pytest.approx(0.01 / design.weights()[0])
