"""Dose–response of a backdoor per fine-tuning method: how many poisoned examples it takes.

Peers report one end-point ASR per attack; what a user needs is the dose. Per method, the ASR of
runs poisoned with d examples is fitted by a logistic in log d above the method's clean floor:

    ASR(d) = f + (1 − f) · σ(s · (ln d − ln m)),     s > 0,

with f the mean ASR of the method's own clean runs (d = 0: the triggered inputs a model maps to
the target with no poison at all; 0 without such runs), m and s fitted by least squares on the
runs (scipy). **ED50** is the dose at which the fitted ASR reaches 0.5: ln ED50 = ln m +
logit((0.5 − f)/(1 − f))/s (none where f ≥ 0.5: the clean model is already there).

Intervals come from the bootstrap over **seeds** (the independent unit, as for the declared
claims: a seed fixes the training subset and the poison draw of every dose): resample the seeds
with replacement, refit every method on the same resample (so the ratio ED50(method)/ED50(FF) is
paired), take the percentile interval. Resamples whose fit fails or has no ED50 are counted, not
hidden.

**Count or rate?** Across training-set sizes N, a dose can be the count d or the rate d/N; with a
single N they are proportional and fit equally. `count_or_rate` fits both ways (same model, same
number of parameters, so the residual sums of squares compare directly: ΔAIC = n·ln(RSS_rate /
RSS_count), positive when the count explains better) and reports the share of seed resamples in
which the count wins.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP = 400
LEVEL = 0.95
REFERENCE = "ff"
BOOTSTRAP_SEED = 20240723  # fixed: the report is a pure function of the database


@dataclass(frozen=True)
class Observation:
    """One run: its method, seed, poisoned count, training-set size and ASR."""

    method: str
    seed: int
    count: int
    size: int
    asr: float

    @property
    def rate(self) -> float:
        return self.count / self.size


@dataclass(frozen=True)
class Fit:
    midpoint: float  # m, in dose units
    slope: float  # s, per unit of ln dose
    floor: float  # f
    rss: float
    n: int  # poisoned runs fitted

    def asr(self, dose) -> np.ndarray:
        z = self.slope * (np.log(np.asarray(dose, dtype=float)) - math.log(self.midpoint))
        return self.floor + (1.0 - self.floor) / (1.0 + np.exp(-z))

    @property
    def ed50(self) -> float | None:
        if self.floor >= 0.5:
            return None
        p = (0.5 - self.floor) / (1.0 - self.floor)
        return math.exp(math.log(self.midpoint) + math.log(p / (1.0 - p)) / self.slope)


def fit_logistic(doses: Sequence[float], asr: Sequence[float], floor: float = 0.0) -> Fit | None:
    """The least-squares logistic of `asr` in ln(dose) above `floor` (doses > 0); None when it
    cannot be fitted (fewer than two distinct doses, or the optimiser fails)."""
    from scipy.optimize import least_squares

    x, y = np.log(np.asarray(doses, dtype=float)), np.asarray(asr, dtype=float)
    if len(np.unique(x)) < 2:
        return None

    def residuals(theta):
        log_m, log_s = theta
        z = np.clip(math.exp(min(log_s, 10.0)) * (x - log_m), -60.0, 60.0)
        return floor + (1.0 - floor) / (1.0 + np.exp(-z)) - y

    # MINPACK's Levenberg–Marquardt on (ln m, ln s), unbounded (the log keeps m and s positive):
    # milliseconds per fit, which the bootstrap repeats hundreds of times. Two starts (the
    # median dose, and the dose nearest the middle of the observed ASRs), the better kept.
    middle = float(x[np.argmin(np.abs(y - (y.min() + y.max()) / 2))])
    best = None
    for start in ((float(np.median(x)), 0.0), (middle, 0.0)):
        solution = least_squares(residuals, start, method="lm")
        if solution.success and np.all(np.isfinite(solution.x)) and (best is None or solution.cost < best.cost):
            best = solution
    if best is None or not -20.0 < best.x[1] < 10.0:  # a step or a flat line: no logistic to speak of
        return None
    log_m, log_s = best.x
    return Fit(math.exp(log_m), math.exp(log_s), floor, float(2 * best.cost), len(y))


def fit_method(observations: Iterable[Observation], dose: str = "count") -> Fit | None:
    """A method's fit: the floor from its clean runs, the logistic through its poisoned ones."""
    observations = list(observations)
    clean = [o.asr for o in observations if o.count == 0]
    poisoned = [o for o in observations if o.count > 0]
    floor = float(np.mean(clean)) if clean else 0.0
    return fit_logistic([getattr(o, dose) for o in poisoned], [o.asr for o in poisoned], min(floor, 0.999))


def _resample(by_seed: dict[int, list[Observation]], rng: np.random.Generator) -> list[Observation]:
    seeds = sorted(by_seed)
    return [o for i in rng.integers(len(seeds), size=len(seeds)) for o in by_seed[seeds[i]]]


def _interval(values: list[float], level: float) -> tuple[float, float] | None:
    if not values:
        return None
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def dose_response(observations: Iterable[Observation], *, reference: str = REFERENCE, boot: int = BOOTSTRAP,
                  level: float = LEVEL, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Per method: ED50 (dose = poisoned count), its bootstrap interval over seeds, the fit, and
    ED50 / ED50(`reference`) with its paired interval; `failed`: resamples without an ED50."""
    observations = list(observations)
    methods = sorted({o.method for o in observations})
    by_seed: dict[int, list[Observation]] = defaultdict(list)
    for o in observations:
        by_seed[o.seed].append(o)
    fits = {m: fit_method(o for o in observations if o.method == m) for m in methods}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[float]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    for _ in range(boot):
        sample = _resample(by_seed, rng)
        ed = {}
        for m in methods:
            fit = fit_method(o for o in sample if o.method == m)
            ed[m] = fit.ed50 if fit is not None else None
            if ed[m] is None:
                failed[m] += 1
            else:
                draws[m].append(ed[m])
        for m in methods:
            if m != reference and ed.get(m) is not None and ed.get(reference) is not None:
                ratios[m].append(ed[m] / ed[reference])
    result = {}
    for m in methods:
        fit = fits[m]
        ed50 = fit.ed50 if fit is not None else None
        reference_ed50 = fits[reference].ed50 if fits.get(reference) is not None else None
        ratio = ed50 / reference_ed50 if m != reference and ed50 is not None and reference_ed50 else None
        result[m] = {"ed50": ed50, "ed50_interval": _interval(draws[m], level), "fit": fit,
                     "seeds": len({o.seed for o in observations if o.method == m}),
                     "ratio": ratio, "ratio_interval": _interval(ratios[m], level) if m != reference else None,
                     "failed": failed[m], "boot": boot}
    return result


def count_or_rate(observations: Iterable[Observation], *, boot: int = BOOTSTRAP,
                  seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Per method: the count fit's and the rate fit's RSS, ΔAIC (> 0: the count explains better),
    the verdict and the share of seed resamples in which the count wins. With one training-set
    size the two cannot be told apart (verdict "one training-set size")."""
    observations = list(observations)
    out = {}
    for m in sorted({o.method for o in observations}):
        own = [o for o in observations if o.method == m]
        if len({o.size for o in own if o.count > 0}) < 2:
            out[m] = {"verdict": "one training-set size: count and rate are proportional"}
            continue
        by_count, by_rate = fit_method(own, "count"), fit_method(own, "rate")
        if by_count is None or by_rate is None:
            out[m] = {"verdict": "no fit"}
            continue
        delta = _delta_aic(by_count, by_rate)
        by_seed: dict[int, list[Observation]] = defaultdict(list)
        for o in own:
            by_seed[o.seed].append(o)
        rng, wins, fitted = np.random.default_rng(seed), 0, 0
        for _ in range(boot):
            sample = _resample(by_seed, rng)
            c, r = fit_method(sample, "count"), fit_method(sample, "rate")
            if c is not None and r is not None:
                fitted += 1
                wins += _delta_aic(c, r) > 0
        out[m] = {"rss_count": by_count.rss, "rss_rate": by_rate.rss, "delta_aic": delta,
                  "verdict": "count" if delta > 0 else "rate", "count_wins_share": wins / fitted if fitted else None}
    return out


def _delta_aic(by_count: Fit, by_rate: Fit) -> float:
    tiny = 1e-12  # a perfect fit has RSS 0
    return by_count.n * math.log((by_rate.rss + tiny) / (by_count.rss + tiny))


# ---- from stored runs -------------------------------------------------------------------------------
def observations_from_runs(runs: Iterable[dict[str, Any]]) -> dict[tuple, list[Observation]]:
    """Finished classification runs with an ASR, grouped by (threat, task, model, attack): the
    unit a dose–response is fitted in. The dose is the poisoned count of the run's poison section
    (under poisoned_base: stage 1's) and the size the training set it was drawn into."""
    groups: dict[tuple, list[Observation]] = defaultdict(list)
    for run in runs:
        document = run.get("result") or run
        config, metrics = document.get("config", {}), document.get("metrics", {})
        if document.get("kind", "train") != "train" or metrics.get("asr") is None:
            continue
        data, poison = document.get("data", {}), document.get("poison", {})
        threat = config.get("threat", "fine_tune_poison")
        # the training set the poison was drawn into: stage 1's where a threat has one (poisoned_base)
        size = data.get("base_examples", data.get("train_examples"))
        if not size or poison.get("count") is None:
            continue
        key = (threat, config.get("task"), config.get("model"), config.get("attack"))
        groups[key].append(Observation(config["method"], int(config["seed"]), int(poison["count"]), int(size),
                                       float(metrics["asr"])))
    return groups


def dose_response_groups(runs: Iterable[dict[str, Any]], boot: int = BOOTSTRAP) -> list[dict[str, Any]]:
    """Per group with two or more poisoned doses at one training-set size: ED50 per method at
    each such size, then count or rate across the sizes. Empty when nothing can be fitted."""
    groups = []
    for (threat, task, model, attack), observations in sorted(observations_from_runs(runs).items(), key=str):
        sizes = sorted({o.size for o in observations})
        fitted_sizes = [n for n in sizes if len({o.count for o in observations if o.size == n and o.count > 0}) >= 2]
        if not fitted_sizes:
            continue
        rows = []
        for size in fitted_sizes:
            for m, row in dose_response([o for o in observations if o.size == size], boot=boot).items():
                fit = row["fit"]
                rows.append({"size": str(size), "method": m, "seeds": str(row["seeds"]), "ed50": _num(row["ed50"]),
                             "ed50_interval": _pair(row["ed50_interval"]), "ratio": _num(row["ratio"]),
                             "ratio_interval": _pair(row["ratio_interval"]),
                             "slope": _num(fit.slope if fit else None), "floor": _num(fit.floor if fit else None),
                             "failed": f"{row['failed']}/{row['boot']}"})
        count_or_rate_lines = []
        for m, row in count_or_rate(observations, boot=boot).items():
            detail = (f" (ΔAIC {row['delta_aic']:+.1f}; the count explains better in {row['count_wins_share']:.0%} of "
                      f"seed resamples)" if "delta_aic" in row else "")
            count_or_rate_lines.append({"method": m, "text": f"{row['verdict']}{detail}"})
        groups.append({"name": " · ".join(map(str, (threat, task, model, attack))), "rows": rows,
                       "count_or_rate": count_or_rate_lines})
    return groups


ABOUT = ("ASR vs ln(poisoned count), a logistic above each method's clean floor; ED50 = the count at 50% ASR; "
         f"{int(LEVEL * 100)}% intervals: bootstrap over seeds ({{boot}} resamples; `ttrlab.report.dose_response`).")
COLUMNS = ("size", "method", "seeds", "ed50", "ed50_interval", "ratio", "ratio_interval", "slope", "floor", "failed")


def dose_response_markdown(groups: list[dict[str, Any]], boot: int = BOOTSTRAP) -> str:
    """`dose_response_groups` as the report's side file dose_response.md."""
    from ttrlab.report.aggregate import markdown_text  # names come from stored configs: escaped

    lines = ["# Dose–response: ED50 per method", "", ABOUT.format(boot=boot), ""]
    for group in groups:
        lines += [f"## {markdown_text(group['name'])}", "",
                  "| training examples | method | seeds | ED50 | interval | ED50 / FF | interval | slope | floor | "
                  "failed resamples |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(markdown_text(row[c]) if c == "method" else row[c] for c in COLUMNS) + " |"
                  for row in group["rows"]]
        lines += ["", "Count or rate (across the training-set sizes):", ""]
        lines += [f"- {markdown_text(line['method'])}: {line['text']}" for line in group["count_or_rate"]]
        lines.append("")
    if not groups:
        lines.append("No group of runs has two or more poisoned doses: nothing to fit (specs/cpu/dose_response.yaml).")
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    return "–" if value is None else f"{value:.3g}"


def _pair(pair) -> str:
    return "–" if pair is None else f"[{pair[0]:.3g}, {pair[1]:.3g}]"
