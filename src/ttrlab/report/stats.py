"""Statistics over seeds, honest at the few seeds a sweep affords (2 on the CPU specs, 5 in the
paper), and Spearman's ρ for the theory-vs-measured panels.

Cells (one setting, n seeds) — `summarize`:
- n, mean, standard deviation with ddof=1 (the paper reports "mean ± std" without saying which;
  ddof=1 is the unbiased variance estimate, 12% larger than ddof=0 at n = 5), min, max;
- for n ≥ 3 a 95% Student-t interval of the mean, mean ± t(0.975, n−1)·SD/√n. It assumes the
  seed-to-seed values are roughly normal and is wide at small n, as it should be (t = 4.30 at
  n = 3). Below 3 seeds no interval ("n too small"): a percentile bootstrap of 2 or 3 points can
  only return a few resample means and is far too narrow, and t at n = 2 is 12.7.

Comparisons (a method vs the full method at the same setting) — `compare`:
- **paired by seed**: seed s of both arms trained on the same data subset and poison set, so the
  paired difference d_s = a_s − b_s removes what the seed changes in the data;
- **primary test**: the exact sign-flip permutation test of the mean paired difference (under
  "no difference" each d_s is as likely as −d_s; p is the share of all 2^n sign assignments whose
  |mean| is at least the observed one), `scipy.stats.permutation_test` on the differences with
  `permutation_type='samples'`: exact up to 16 pairs (65,536 assignments), seeded Monte Carlo
  beyond. Its smallest possible value is 2^(1−n): 0.5, 0.25, 0.125, 0.0625 for n = 2…5 — with
  fewer than 6 pairs no difference, however large, can reach p < 0.05;
- **significance mark**: only from that p, only with n ≥ 3 pairs, at α = 0.05 two-sided;
- a 95% Student-t interval of the mean paired difference (n ≥ 3 pairs);
- **minimum detectable difference** (MDD): the true mean paired difference that a two-sided
  paired t-test at α = 0.05 detects with power 0.8, given the observed SD of the paired
  differences (noncentral t, solved numerically) — the size of effect this design could see;
- secondary: Welch's unequal-variance t-test on the two arms, unpaired (n ≥ 3 per arm).
Below 3 pairs a comparison says "n too small" instead of an interval or a mark. p-values are per
row in the report's comparison tables; the verdicts on declared claims correct over their families
(`ttrlab.report.claims`).

Prompt-level comparisons (a method vs the full method on the same scored prompts) — `mcnemar`:
- the **exact McNemar test** on paired 0/1 outcomes: only the discordant pairs count, b (the full
  method's answer hit, the other's did not) and c (the reverse); under "no difference" each
  discordant pair is b or c with probability 1/2, so p is the two-sided exact binomial tail,
  min(1, 2 · P(X ≤ min(b, c))) with X ~ Binomial(b + c, 1/2). It is the sign test of the
  discordant pairs, so its smallest p is the sign-flip's 2^(1−n) at n = b + c: below
  `MIN_DISCORDANT` (6) discordant pairs no difference can reach p < 0.05, and it says "n too
  small" rather than take a side. It describes one pair of runs (one seed of each arm): prompts
  of different seeds are not independent draws, so it is never a claim's test across seeds.

Tests across independent units (`unit_test`, `tost_p`) and the corrections over a family of
claims (`holm`, `benjamini_hochberg`) are what the declared claims use (`ttrlab.report.claims`).
"""
from __future__ import annotations

import itertools
import math
import warnings
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import optimize
from scipy import stats as sps

DDOF = 1
CONFIDENCE = 0.95
ALPHA = 0.05  # two-sided
POWER = 0.8
MIN_N = 3  # fewer seeds (or pairs): no interval, no test, no mark
EXACT_ASSIGNMENTS = 2**16  # sign-flip: exact up to 16 pairs, Monte Carlo with this many draws beyond
NAN = float("nan")


def stable_seed(*parts: object) -> int:
    """A seed derived from a label (CRC32), so each comparison's Monte Carlo has its own fixed stream."""
    return zlib.crc32("|".join(map(str, parts)).encode())


# ---- one cell -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # ddof=1
    ci_low: float  # Student-t 95% interval of the mean; NaN below MIN_N
    ci_high: float
    min: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """n, mean, std (ddof=1), the Student-t 95% interval of the mean (n ≥ 3), min, max."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, NAN, NAN, NAN, NAN, NAN, NAN)
    mean = float(x.mean())
    std = float(x.std(ddof=DDOF)) if n > 1 else NAN
    low, high = t_interval(x)
    return Summary(n, mean, std, low, high, float(x.min()), float(x.max()))


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """mean ± t(1 − (1 − confidence)/2, n − 1) · SD/√n; (NaN, NaN) below MIN_N values."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < MIN_N:
        return NAN, NAN
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


# ---- a method vs the full method ----------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    n_a: int  # seeds of each arm
    n_b: int
    mean_a: float  # each arm's mean over its own seeds
    mean_b: float
    difference: float  # mean_a − mean_b
    n_pairs: int  # seeds both arms hold
    paired_difference: float  # mean of a_s − b_s over the paired seeds
    paired_sd: float  # ddof=1
    ci_low: float  # Student-t 95% interval of the paired difference (n_pairs ≥ 3)
    ci_high: float
    p_sign_flip: float  # two-sided, paired; exact up to 16 pairs
    p_floor: float  # 2^(1 − n_pairs): the smallest p the sign-flip test can give
    mdd: float  # minimum detectable paired difference (α = 0.05, power 0.8)
    welch_t: float
    welch_df: float
    welch_p: float
    significant: bool  # n_pairs ≥ 3 and p_sign_flip < α
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(a: Mapping[Any, float], b: Mapping[Any, float], seed: int = 0) -> Comparison:
    """Arm a vs arm b, each {seed: value}: the paired statistics above on the seeds both hold,
    Welch's t-test on all values of each arm."""
    xa, xb = np.array(list(a.values()), dtype=float), np.array(list(b.values()), dtype=float)
    mean_a = float(xa.mean()) if len(xa) else NAN
    mean_b = float(xb.mean()) if len(xb) else NAN
    paired = [s for s in a if s in b]
    d = np.array([a[s] - b[s] for s in paired], dtype=float)
    n = len(d)
    paired_mean = float(d.mean()) if n else NAN
    paired_sd = float(d.std(ddof=1)) if n > 1 else NAN
    low, high = t_interval(d)
    p = sign_flip_p(d, seed) if n >= MIN_N else NAN
    floor = sign_flip_floor(n) if n else NAN
    mdd = minimum_detectable_difference(paired_sd, n) if n >= MIN_N else NAN
    t, df, welch_p = welch(xa, xb)
    significant = n >= MIN_N and p < ALPHA
    if n < MIN_N:
        verdict = f"n too small ({n} paired seed{'' if n == 1 else 's'}; at least {MIN_N} needed)"
    elif floor >= ALPHA:
        verdict = f"cannot reach p < {ALPHA:g} with {n} pairs (sign-flip p ≥ 2^(1−n) = {floor:.4g})"
    else:
        verdict = f"{'significant' if significant else 'not significant'} (sign-flip p = {p:.3g})"
    return Comparison(len(xa), len(xb), mean_a, mean_b, mean_a - mean_b, n, paired_mean, paired_sd, low, high,
                      p, floor, mdd, t, df, welch_p, bool(significant), verdict)


def sign_flip_p(differences: Sequence[float], seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of the mean of paired differences: exact (all 2^n
    sign assignments) up to 16 pairs, seeded Monte Carlo beyond."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        return NAN
    if np.all(d == 0):
        return 1.0
    result = sps.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), vectorized=True,
                                  permutation_type="samples", n_resamples=EXACT_ASSIGNMENTS,
                                  alternative="two-sided", rng=np.random.default_rng(seed))
    return float(result.pvalue)


def sign_flip_floor(n_pairs: int) -> float:
    """The smallest two-sided p of the exact sign-flip test with n pairs: only the observed signs
    and their mirror image are as extreme, 2 of 2^n assignments."""
    return 2.0 ** (1 - n_pairs)


def minimum_detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The true mean paired difference a two-sided paired t-test at `alpha` detects with
    probability `power`, for n pairs whose differences have standard deviation `sd`."""
    if n < 2 or not math.isfinite(sd):
        return NAN
    if sd == 0:
        return 0.0
    df = n - 1
    critical = float(sps.t.ppf(1 - alpha / 2, df))

    def shortfall(effect: float) -> float:  # effect = difference / sd; the lower tail as sf at −nc (cdf is NaN far out)
        nc = effect * math.sqrt(n)
        return float(sps.nct.sf(critical, df, nc) + sps.nct.sf(critical, df, -nc)) - power

    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return optimize.brentq(shortfall, 0.0, high) * sd


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Welch's t-test (t, df, two-sided p) on all values of each arm; NaN below MIN_N per arm or
    when neither arm varies."""
    if len(a) < MIN_N or len(b) < MIN_N or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return NAN, NAN, NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = sps.ttest_ind(a, b, equal_var=False)
    return float(test.statistic), float(test.df), float(test.pvalue)


# ---- paired 0/1 outcomes: the exact McNemar test ---------------------------------------------------
# the fewest discordant pairs whose exact two-sided p can go below ALPHA: 2^(1−n) < ALPHA
MIN_DISCORDANT = math.floor(1 - math.log2(ALPHA)) + 1


@dataclass(frozen=True)
class McNemar:
    pairs: int  # paired outcomes (concordant ones included)
    b: int  # arm b hit, arm a did not (in the report: the full method only)
    c: int  # arm a hit, arm b did not
    p: float  # two-sided exact; NaN without pairs
    significant: bool  # b + c ≥ MIN_DISCORDANT and p < ALPHA
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(a: Sequence[int], b: Sequence[int]) -> McNemar:
    """The exact McNemar test of paired 0/1 outcomes a[i], b[i] (same subject i)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes differ in length: {len(a)} and {len(b)}")
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    return mcnemar_counts(len(a), only_b, only_a)


def mcnemar_counts(pairs: int, b: int, c: int) -> McNemar:
    """The exact McNemar test from its counts: `pairs` paired outcomes, b and c discordant."""
    n = b + c
    if pairs == 0:
        return McNemar(0, 0, 0, NAN, False, "n too small (no paired outcomes)")
    p = exact_binomial_two_sided(min(b, c), n)
    if n < MIN_DISCORDANT:
        verdict = (f"n too small ({n} discordant pair{'' if n == 1 else 's'}; the exact test cannot reach "
                   f"p < {ALPHA:g} below {MIN_DISCORDANT})")
        return McNemar(pairs, b, c, p, False, verdict)
    significant = p < ALPHA
    return McNemar(pairs, b, c, p, significant, f"{'significant' if significant else 'not significant'} (exact p = {p:.3g})")


def exact_binomial_two_sided(k: int, n: int) -> float:
    """min(1, 2 · P(X ≤ k)) for X ~ Binomial(n, 1/2) and k ≤ n/2: the symmetric two-sided tail."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    return min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n)


# ---- Spearman's ρ (theory vs measured) ----------------------------------------------------------
EXACT_PERMUTATION_MAX_N = 8  # n! ≤ 40,320 pairings


def spearman(points: Sequence[dict]) -> dict[str, Any]:
    """Spearman's ρ of "computed" vs "measured" over the points, scipy's p-value (t
    approximation), and for n ≤ 8 the exact two-sided permutation p-value (all n! pairings; at
    n = 4 it cannot go below 2/24). n < 4 is flagged as not informative; n < 3 or a constant
    side gives no ρ."""
    n = len(points)
    out: dict[str, Any] = {"n": n, "rho": None, "p_value": None, "p_exact": None, "informative": n >= 4}
    if n < 3:
        return out
    x = np.array([p["computed"] for p in points])
    y = np.array([p["measured"] for p in points])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    rho, p = sps.spearmanr(x, y)
    out["rho"], out["p_value"] = float(rho), float(p)
    if n <= EXACT_PERMUTATION_MAX_N:
        out["p_exact"] = exact_spearman_p(x, y)
    return out


def exact_spearman_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact permutation p-value of Spearman's ρ: the share of all n! pairings of the
    ranks of x with those of y whose |ρ| is at least the observed one (ties: average ranks)."""
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    perms = rx[np.array(list(itertools.permutations(range(len(x)))))]
    centred = perms - perms.mean(axis=1, keepdims=True)
    cy = ry - ry.mean()
    rhos = centred @ cy / (np.sqrt((centred**2).sum(axis=1)) * math.sqrt(float(cy @ cy)))
    observed = abs(float(rhos[0]))  # permutation 0 is the identity: the observed pairing
    return float(np.mean(np.abs(rhos) >= observed - 1e-12))


def correlation_text(stats: dict[str, Any]) -> str:
    """'ρ = 0.80, p = 0.20 (exact 0.33), n = 4' — or why there is no (informative) ρ."""
    n = stats["n"]
    if stats["rho"] is None:
        return f"ρ undefined (n = {n}{', a constant side' if n >= 3 else ''})"
    text = f"ρ = {stats['rho']:.2f}, p = {stats['p_value']:.2g}"
    if stats.get("p_exact") is not None:
        text += f" (exact {stats['p_exact']:.2g})"
    text += f", n = {n}"
    if not stats["informative"]:
        text += " — not informative (n < 4)"
    return text


# ---- tests across independent units (seeds) -------------------------------------------------------
@dataclass(frozen=True)
class UnitTest:
    """One-sample tests of unit-level values (each unit's paired difference, or its ρ) against 0,
    and the equivalence test against ±margin. Every p here treats the n values as independent."""

    n: int
    mean: float
    sd: float  # ddof=1
    ci_low: float  # Student-t 95% interval of the mean (n ≥ 2)
    ci_high: float
    p_t: float  # two-sided one-sample t-test; where every unit gave the same value, the sign-flip p
    p_sign_flip: float  # two-sided exact sign-flip (distribution-free; floor 2^(1−n))
    p_tost: float  # two one-sided t-tests against ±margin (NaN without a margin)
    mdd: float  # the mean a two-sided t-test at α detects with power 0.8 at this sd and n

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def unit_test(values: Sequence[float], margin: float | None = None, seed: int = 0) -> UnitTest:
    """t, sign-flip and (with a margin) TOST on the unit values."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return UnitTest(0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else NAN
    if n < 2:
        return UnitTest(n, mean, sd, NAN, NAN, NAN, NAN, NAN, NAN)
    sign_flip = sign_flip_p(x, seed)
    if sd == 0:  # t is undefined; every unit agrees, which only the sign-flip test can weigh
        p_t, low, high = sign_flip, mean, mean
        p_tost = NAN  # no spread, no equivalence test: units that never vary test nothing about a margin
    else:
        se = sd / math.sqrt(n)
        p_t = float(t_p_value(mean, sd, n))
        half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * se
        low, high = mean - half, mean + half
        p_tost = NAN if margin is None else tost_p(mean, se, n - 1, margin)
    return UnitTest(n, mean, sd, low, high, p_t, sign_flip, p_tost, minimum_detectable_difference(sd, n))


def t_p_value(mean, sd, n: int):
    """Two-sided one-sample t-test p of H0: μ = 0 from the mean, the sd (ddof=1) and n; works on
    arrays (the null simulations of the sequential design use it too)."""
    return 2 * sps.t.sf(np.abs(mean) / (sd / math.sqrt(n)), n - 1)


def tost_p(mean: float, se: float, df: int, margin: float) -> float:
    """Schuirmann's two one-sided tests of |μ| < margin: the larger of P(T ≥ (mean + m)/se) under
    μ = −m and P(T ≤ (mean − m)/se) under μ = +m. Below α, the 1 − 2α interval lies in ±margin."""
    lower = float(sps.t.sf((mean + margin) / se, df))
    upper = float(sps.t.cdf((mean - margin) / se, df))
    return max(lower, upper)


def t_power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of a two-sided one-sample t-test at level `alpha` for a true mean `effect`."""
    if n < 2 or not (sd > 0) or not math.isfinite(effect):
        return NAN
    df, nc = n - 1, abs(effect) / sd * math.sqrt(n)
    critical = float(sps.t.ppf(1 - alpha / 2, df))
    return float(sps.nct.sf(critical, df, nc) + sps.nct.cdf(-critical, df, nc))


def tost_power(effect: float, sd: float, n: int, alpha: float, margin: float) -> float:
    """Power of TOST at level `alpha` for a true mean `effect` (|effect| < margin), by the
    noncentral t of each one-sided test (the standard approximation: both must reject)."""
    if n < 2 or not (sd > 0) or abs(effect) >= margin:
        return 0.0 if n >= 2 else NAN
    df, se = n - 1, sd / math.sqrt(n)
    critical = float(sps.t.ppf(1 - alpha, df))
    reject_lower = float(sps.nct.sf(critical, df, (effect + margin) / se))
    reject_upper = float(sps.nct.cdf(-critical, df, (effect - margin) / se))
    return max(0.0, reject_lower + reject_upper - 1.0)


# ---- multiplicity -----------------------------------------------------------------------------------
def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error); NaN entries are not in the family
    and stay NaN."""
    tested = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(tested)
    adjusted = [NAN] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg step-up adjusted p-values (false discovery rate); NaN entries stay NaN."""
    tested = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(tested)
    adjusted = [NAN] * len(p_values)
    running = 1.0
    for rank, (p, i) in reversed(list(enumerate(sorted(tested), start=1))):
        running = min(running, m * p / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


def bonferroni(p: float, m: int) -> float:
    return NAN if math.isnan(p) else min(1.0, p * max(m, 1))
