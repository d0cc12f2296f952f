"""Statistics over seeds: ddof=1 std, the Student-t interval (n >= 3 only), the paired sign-flip
test (checked against scipy and against an enumeration written here), its floor 2^(1-n), the
minimum detectable difference (checked by simulation), Welch's t-test, Spearman's exact p, the
exact McNemar test (checked against hand-computed binomial tails and scipy's binomtest)."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from ttrlab.report import stats
from ttrlab.report.stats import (
    compare,
    exact_spearman_p,
    minimum_detectable_difference,
    sign_flip_floor,
    sign_flip_p,
    summarize,
)


def enumerated_sign_flip_p(d):
    """Two-sided p over all 2^n sign assignments, by hand."""
    d = np.asarray(d, dtype=float)
    observed = abs(d.mean())
    means = [abs(np.mean(np.array(signs) * d)) for signs in itertools.product((1, -1), repeat=len(d))]
    return float(np.mean(np.array(means) >= observed - 1e-12))


def scipy_paired_p(a, b, seed=0):
    """scipy's paired permutation test on the two arms (a different call from the report's)."""
    return sps.permutation_test((np.asarray(a), np.asarray(b)), lambda x, y, axis: np.mean(x - y, axis=axis),
                                vectorized=True, permutation_type="samples", n_resamples=2**16,
                                rng=np.random.default_rng(seed)).pvalue


def test_summary_uses_sample_std_and_a_student_t_interval():
    values = [0.80, 0.84, 0.86, 0.90, 0.85]
    s = summarize(values)
    assert s.n == 5 and s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1)) and s.std > np.std(values, ddof=0)
    assert s.min == 0.80 and s.max == 0.90
    reference = sps.ttest_1samp(values, 0).confidence_interval(0.95)
    assert (s.ci_low, s.ci_high) == pytest.approx((reference.low, reference.high))
    two = summarize([0.80, 0.84])
    assert two.std == pytest.approx(np.std([0.80, 0.84], ddof=1))
    assert math.isnan(two.ci_low) and math.isnan(two.ci_high)  # n too small: no interval


def test_t_interval_covers_the_true_mean_about_95_percent_at_n_5():
    rng = np.random.default_rng(0)
    trials = 2000
    covered = sum(s.ci_low <= 1.0 <= s.ci_high for s in (summarize(rng.normal(1.0, 2.0, size=5)) for _ in range(trials)))
    assert 0.93 <= covered / trials <= 0.97


def test_degenerate_samples():
    one = summarize([0.7])
    assert one.n == 1 and one.mean == 0.7 and math.isnan(one.std) and math.isnan(one.ci_low)
    same = summarize([0.5, 0.5, 0.5])
    assert same.std == 0 and same.ci_low == same.ci_high == 0.5
    assert summarize([]).n == 0


@pytest.mark.parametrize("n", [3, 5, 8, 12])
def test_sign_flip_equals_scipy_and_the_enumeration_on_the_same_pairs(n):
    rng = np.random.default_rng(n)
    full = rng.normal(0.8, 0.05, n)
    method = full + rng.normal(0.01, 0.02, n)
    c = compare(dict(enumerate(method)), dict(enumerate(full)))
    assert c.n_pairs == n
    assert c.p_sign_flip == pytest.approx(scipy_paired_p(method, full))
    assert c.p_sign_flip == pytest.approx(enumerated_sign_flip_p(method - full))
    assert c.paired_difference == pytest.approx(np.mean(method - full))
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(sps.ttest_rel(method, full).confidence_interval(0.95)))


def test_pairs_follow_the_seeds_not_the_order():
    method = {2: 0.70, 0: 0.50, 1: 0.61, 7: 0.9}  # seed 7 has no full-method run: left out of the pairs
    full = {0: 0.40, 1: 0.60, 2: 0.69, 5: 0.1}
    c = compare(method, full)
    assert c.n_pairs == 3 and (c.n_a, c.n_b) == (4, 4)
    assert c.paired_difference == pytest.approx(np.mean([0.10, 0.01, 0.01]))
    assert c.difference == pytest.approx(np.mean(list(method.values())) - np.mean(list(full.values())))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_the_sign_flip_floor_is_2_to_the_1_minus_n(n):
    huge = compare({s: 1.0 for s in range(n)}, {s: 0.0 for s in range(n)})  # every pair +1: as extreme as it gets
    assert sign_flip_floor(n) == 2.0 ** (1 - n)
    if n < 3:
        assert math.isnan(huge.p_sign_flip) and not huge.significant and huge.verdict.startswith("n too small")
        assert math.isnan(huge.ci_low) and math.isnan(huge.mdd)
        return
    assert huge.p_sign_flip == pytest.approx(2.0 ** (1 - n)) == pytest.approx(huge.p_floor)
    assert huge.significant == (n >= 6)  # 5 pairs: p = 0.0625 at best, never below 0.05
    if n <= 5:
        assert "cannot reach p < 0.05" in huge.verdict and f"{2.0 ** (1 - n):.4g}" in huge.verdict


def test_a_planted_difference_with_6_pairs_is_significant_and_a_null_is_not():
    rng = np.random.default_rng(3)
    full = rng.normal(0.60, 0.08, 6)  # seed-to-seed spread much larger than the effect...
    planted = compare(dict(enumerate(full - 0.05 + rng.normal(0, 0.005, 6))), dict(enumerate(full)))
    assert planted.significant and planted.verdict.startswith("significant")  # ...pairing removes it
    assert planted.p_sign_flip == pytest.approx(2 / 64)
    unpaired = compare(dict(enumerate(full - 0.05 + rng.normal(0, 0.005, 6))), dict(enumerate(rng.permutation(full))))
    assert not unpaired.significant  # the same arms with the pairing broken
    null = compare(dict(enumerate(full + rng.normal(0, 0.01, 6))), dict(enumerate(full)))
    assert null.p_sign_flip > 0.05 and not null.significant and null.verdict.startswith("not significant")


def test_sign_flip_beyond_16_pairs_is_seeded_monte_carlo_close_to_exact():
    rng = np.random.default_rng(11)
    d = rng.normal(0.3, 1.0, 18)  # 2^18 assignments: exact by enumeration here, Monte Carlo in the report
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=18)))
    exact = float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9))
    p = sign_flip_p(d, seed=1)
    assert p == sign_flip_p(d, seed=1)  # seeded: the same report twice
    assert abs(p - exact) < 0.01  # 65,536 draws: standard error about 0.002 here
    assert 0.01 < exact < 0.5  # a case where the draw matters


def test_minimum_detectable_difference_has_80_percent_power_by_simulation():
    rng = np.random.default_rng(4)
    for n in (3, 5, 10):
        mdd = minimum_detectable_difference(1.0, n)
        d = rng.normal(mdd, 1.0, size=(20000, n))
        power = float(np.mean(sps.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05))
        assert 0.78 <= power <= 0.82, (n, mdd, power)
    assert minimum_detectable_difference(0.02, 5) == pytest.approx(0.02 * minimum_detectable_difference(1.0, 5))
    assert minimum_detectable_difference(1.0, 5) > minimum_detectable_difference(1.0, 10)


def test_welch_is_secondary_and_matches_scipy():
    lora = {s: v for s, v in enumerate([0.70, 0.72, 0.69, 0.75, 0.71])}
    ff = {s: v for s, v in enumerate([0.80, 0.83, 0.79, 0.81])}
    c = compare(lora, ff)
    reference = sps.ttest_ind(list(lora.values()), list(ff.values()), equal_var=False)
    assert c.welch_p == pytest.approx(reference.pvalue) and c.welch_t == pytest.approx(reference.statistic)
    assert c.welch_df == pytest.approx(reference.df)
    assert math.isnan(compare({0: 0.5, 1: 0.6}, {0: 0.6, 1: 0.7}).welch_p)  # n too small for it too


def test_exact_spearman_p_by_enumeration():
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])
    rho = sps.spearmanr(x, y)[0]
    rhos = [sps.spearmanr(x, y[list(p)])[0] for p in itertools.permutations(range(4))]
    assert exact_spearman_p(x, y) == pytest.approx(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


# ---- the exact McNemar test ------------------------------------------------------------------------
@pytest.mark.parametrize("b,c,p", [
    (8, 1, 2 * (1 + 9) / 2**9),  # 2 · P(X ≤ 1), X ~ Bin(9, 1/2) = 20/512
    (1, 8, 20 / 512),  # symmetric
    (10, 2, 2 * (1 + 12 + 66) / 2**12),  # 158/4096
    (6, 0, 2 / 2**6),  # the floor 2^(1−n) at n = 6
    (3, 3, 1.0),
    (0, 0, 1.0),
])
def test_exact_mcnemar_p_by_hand(b, c, p):
    test = stats.mcnemar_counts(b + c + 5, b, c)
    assert test.p == pytest.approx(p, rel=1e-12)
    if b + c:
        assert test.p == pytest.approx(sps.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-12)


def test_mcnemar_counts_discordant_pairs_and_says_n_too_small():
    assert stats.MIN_DISCORDANT == 6  # 2^(1−5) = 0.0625 ≥ 0.05 > 2^(1−6)
    method = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1]
    full = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]  # full only on 0-4 and 10, the method only on 11
    test = stats.mcnemar(method, full)
    assert (test.pairs, test.b, test.c) == (12, 6, 1)
    assert test.p == pytest.approx(2 * 8 / 128) and not test.significant and test.verdict.startswith("not significant")
    five = stats.mcnemar_counts(20, 5, 0)  # p = 0.0625: cannot reach 0.05 with 5 discordant pairs
    assert five.p == pytest.approx(0.0625) and not five.significant
    assert five.verdict == "n too small (5 discordant pairs; the exact test cannot reach p < 0.05 below 6)"
    six = stats.mcnemar_counts(20, 6, 0)
    assert six.significant and six.verdict == "significant (exact p = 0.0312)"
    none = stats.mcnemar_counts(0, 0, 0)
    assert math.isnan(none.p) and none.verdict == "n too small (no paired outcomes)"
    with pytest.raises(ValueError, match="differ in length"):
        stats.mcnemar([1, 0], [1])
