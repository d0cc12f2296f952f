"""The paper's claims checked against a database: one verdict per claim of `paper_numbers.yaml`
(`claims:`), each from the runs the claim selects, with the report's paired statistics.

A claim names a test (`TESTS`, one function each), the runs (`kind`, `where`), a metric and the
sign the paper expects. The tests:

- **method_vs_full**: every (LoRA cell, FF cell) pair at the same setting (`aggregate.full_pairs`)
  that `where` selects, LoRA at its kind's default settings (r = 8, α = 16, default init: the
  paper's Figs. 1-2 and its tables; the rank and k sweeps are trends), paired by setting and
  seed and pooled over the settings: the report's
  `stats.compare` (mean paired difference LoRA − FF, t interval, exact sign-flip p, MDD). Pooling
  is what gives the test its pairs: 3 seeds of one setting cannot reach p < 0.05 (the sign-flip
  floor is 0.25), 3 seeds × 3 rates × 2 tasks can. For a backdoor, a setting whose backdoor did
  not implant in FF (FF's ASR not `IMPLANT_MIN` above the ASR of the same FF cell at rate 0) is
  left out and named: a backdoor that does not implant tests nothing; so is a setting where a
  side did not learn the task (trained without poison its clean accuracy is within 5 points of
  chance, or it predicts one class for ≥ 98% of inputs, as MiniLM on CoLA in 200 steps: an
  accuracy gap of 0 between two constant classifiers says nothing about robustness);
- **vs_clean**: a poisoned cell against the same cell at rate 0, paired by seed, pooled;
- **trend**: Spearman's ρ of the metric against an axis (rank, k, ...) within each block (the
  runs of one setting and seed that differ only in the axis and its learning rate), averaged
  over the blocks, leaving out the axis values where the method did not learn the task (as
  above; e.g. LoRA r ≥ 64 at the cpu preset's high-rank rate); p from a blocked permutation test (the axis values shuffled within each block;
  exact up to `stats.EXACT_ASSIGNMENTS` assignments, seeded Monte Carlo beyond), so the seed
  pairing is kept;
- **gap_trend**: the same, of the paired difference LoRA − FF against the axis;
- **prompts_vs_full**: generative LoRA vs FF on the same scored prompts, the exact McNemar test
  pooled over the seeds both hold (`paired.prompt_pairs`), the same implant rule on FF's ASR
  against its ASR without the trigger.

The verdict (`verdict`): a directional claim is "same direction" or "opposite direction", each
"significant" or "not significant" (α = 0.05, two-sided); a "no effect" claim is "no significant
effect, as in the paper" or "significant effect, the paper sees none" (with the MDD: how large an
effect the design could see); "not testable here" when the database holds no such runs, fewer
than `stats.MIN_N` pairs, or no backdoor that implanted.
"""
from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import stats as sps

from ttrlab.attacks import ATTACKS
from ttrlab.evaluation import METRICS
from ttrlab.report import stats
from ttrlab.report.aggregate import (
    Cell,
    comparison_key,
    config_value,
    fmt,
    full_pairs,
    is_default_setting,
    to_csv,
    to_markdown,
)
from ttrlab.report.figures import KAIMING_DEFAULT_K
from ttrlab.report.matching import ATTACK_KEYS, is_clean
from ttrlab.report.methods import chance, learned
from ttrlab.report.paired import prompt_pairs
from ttrlab.report.tables import paper_numbers

ONE_CLASS_SHARE = 0.98  # a binary classifier predicting one class for this share of inputs did not learn
NOT_LEARNED = f"did not learn the task (chance accuracy or one class for ≥ {100 * ONE_CLASS_SHARE:g}% of inputs"
IMPLANT_MIN = 0.10  # FF's ASR must exceed the clean (rate-0 / untriggered) ASR by this much
UNDEFENDED = {"defense": "none"}  # the paper's claims are about undefended training (where a run has the key)
TREND_SKIP = ("seed", "lr")  # never part of a trend's block: the seed is, the lr follows the axis (rank presets)

SAME_SIG = "same direction, significant"
SAME = "same direction, not significant"
OPPOSITE_SIG = "opposite direction, significant"
OPPOSITE = "opposite direction, not significant"
NULL_HOLDS = "no significant effect, as in the paper"
NULL_FAILS = "significant effect, the paper sees none"
NO_DIFFERENCE = "no difference measured"  # a directional claim whose effect came out exactly 0
NOT_TESTABLE = "not testable here"
VERDICTS = (SAME_SIG, SAME, OPPOSITE_SIG, OPPOSITE, NULL_HOLDS, NULL_FAILS, NO_DIFFERENCE, NOT_TESTABLE)
EXPECT = ("lower", "higher", "none")


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str
    claim: str
    quote: str
    paper: str
    test: str
    metric: str
    expect: str
    where: dict[str, Any]
    kind: str = "train"
    axis: str | None = None
    beyond: str = ""

    def selects(self, cell: Cell) -> bool:
        where = {**UNDEFENDED, **self.where}
        return cell.kind == self.kind and all(_matches(claim_value(cell, key), wanted) for key, wanted in where.items()
                                              if key in self.where or key in cell.config)


@dataclass
class Evidence:
    """What a test measured: the effect (a mean paired difference, or a mean ρ), its test, and
    what it could not use."""
    statistic: str  # how the effect reads: "LoRA − FF", "ρ(rank)", ...
    n: int = 0  # pairs, prompts pairs, or points
    settings: int = 0  # settings (cells or blocks) pooled
    seeds: int = 0  # distinct seeds
    treatment: float = math.nan  # the two arms' means where there are two
    baseline: float = math.nan
    effect: float = math.nan
    ci_low: float = math.nan  # the t interval of the mean paired difference (n ≥ 3 pairs)
    ci_high: float = math.nan
    counts: str = ""  # McNemar's discordant pairs
    p: float = math.nan
    mdd: float = math.nan
    significant: bool = False
    testable: bool = True
    why: str = ""  # the reason a test could not be made, or cannot reach p < α
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (why, setting) of each setting left out

    def excluded_text(self) -> str:
        """'why: setting, setting; why: setting' — the settings left out, grouped by reason."""
        grouped: dict[str, list[str]] = {}
        for why, setting in self.excluded:
            grouped.setdefault(why, []).append(setting)
        return "; ".join(f"{why}: {', '.join(settings)}" for why, settings in grouped.items())


@dataclass
class ClaimResult:
    claim: Claim
    evidence: Evidence
    verdict: str


def claims() -> list[Claim]:
    """paper_numbers.yaml's claims, their test, expectation and metric checked."""
    out = []
    for entry in paper_numbers()["claims"]:
        claim = Claim(**{"quote": "", "paper": "", **entry})
        if claim.test not in TESTS:
            raise ValueError(f"paper_numbers.yaml claim {claim.id}: unknown test {claim.test!r} (known: {', '.join(TESTS)})")
        if claim.expect not in EXPECT:
            raise ValueError(f"paper_numbers.yaml claim {claim.id}: expect {claim.expect!r} is not one of {', '.join(EXPECT)}")
        METRICS.info(claim.metric)
        out.append(claim)
    return out


def compare_paper(cells: list[Cell]) -> list[ClaimResult]:
    """Every claim's evidence and verdict, in the data file's order."""
    results = []
    for claim in claims():
        evidence = TESTS[claim.test](claim, cells)
        results.append(ClaimResult(claim, evidence, verdict(claim.expect, evidence)))
    return results


def verdict(expect: str, evidence: Evidence) -> str:
    if not evidence.testable or math.isnan(evidence.effect):
        return NOT_TESTABLE
    if expect == "none":
        return NULL_FAILS if evidence.significant else NULL_HOLDS
    if evidence.effect == 0:
        return NO_DIFFERENCE
    if (evidence.effect < 0) == (expect == "lower"):
        return SAME_SIG if evidence.significant else SAME
    return OPPOSITE_SIG if evidence.significant else OPPOSITE


# ---- selecting runs -----------------------------------------------------------------------------
def claim_value(cell: Cell, key: str) -> Any:
    """A cell's value of `key` (a stored config without it: the kind's default); the init scale k
    unset is the default init's k (peft's 1/3)."""
    value = config_value(cell.kind, cell.config, key)
    if key == "init_scale" and value is None and cell.method is not None and cell.method.settings is not None \
            and "init" in cell.method.settings.field_names() \
            and cell.config.get("init", cell.method.settings().init) == cell.method.settings().init:
        return KAIMING_DEFAULT_K
    return value


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return value is not None and float(value) > float(wanted["above"])
    if isinstance(wanted, list):
        return any(_matches(value, w) for w in wanted)
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool) and value is not None:
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    return value == wanted


def _clean_counterpart(cell: Cell, cells: list[Cell]) -> Cell | None:
    """The clean cell equal to `cell` in everything but its rate (the same attack's triggered
    test set)."""
    return _clean_like(cell, cells, ("rate",))


def _clean_trained(cell: Cell, cells: list[Cell]) -> Cell | None:
    """The cell trained like `cell` without poison: under the same attack (its triggered test
    set) if the database holds it, else under any attack."""
    return _clean_counterpart(cell, cells) or _clean_like(cell, cells, ATTACK_KEYS)


def _clean_like(cell: Cell, cells: list[Cell], ignored: tuple[str, ...]) -> Cell | None:
    """The first clean cell (`matching.is_clean`) of the same kind equal to `cell` but for `ignored`."""
    rest = {k: v for k, v in cell.config.items() if k not in ignored}
    for other in cells:
        if other.kind == cell.kind and is_clean(other.config) \
                and {k: v for k, v in other.config.items() if k not in ignored} == rest:
            return other
    return None


def _did_not_learn(cell: Cell) -> bool:
    """Whether a classification cell did not learn its task: its mean clean accuracy within
    `methods.LEARNED_MARGIN` of chance, or — for two labels — at every seed at least
    `ONE_CLASS_SHARE` of the test inputs predicted as one class (CoLA's majority class scores 69%,
    far above chance, and is still no classifier)."""
    if learned(cell) is False:
        return True
    accuracy, precision, recall = (cell.values.get(f"clean.{m}") for m in ("accuracy", "precision", "recall"))
    if not accuracy or not recall or chance(cell) != 0.5:
        return False
    shares = [_predicted_positive_share(a, (precision or {}).get(seed), recall.get(seed)) for seed, a in accuracy.items()]
    return all(q is not None and max(q, 1 - q) >= ONE_CLASS_SHARE for q in shares)


def _predicted_positive_share(accuracy: float, precision: float | None, recall: float | None) -> float | None:
    """The share of test inputs a binary classifier predicted positive, from its accuracy,
    precision and recall: with p the positive share of the data, TP = recall·p, predicted
    positive q = TP / precision, and accuracy = 1 − p − q + 2·TP, solved for p."""
    if recall is None or math.isnan(recall):
        return None
    if recall == 0:
        return 0.0 if precision in (None, 0.0) or math.isnan(precision) else None
    if precision is None or math.isnan(precision) or precision == 0:
        return None
    denominator = 1 + recall / precision - 2 * recall
    if abs(denominator) < 1e-12:
        return None
    p = (1 - accuracy) / denominator
    return recall * p / precision


def _not_learned(cell: Cell, full: Cell, cells: list[Cell]) -> tuple[str, str] | None:
    """(why, setting) when the pair tests nothing because a side did not learn the task trained
    without poison; None when both did (or there is no clean run to tell)."""
    failed = [c.method.label for c in (full, cell)
              if (clean := _clean_trained(c, cells)) is not None and _did_not_learn(clean)]
    if not failed:
        return None
    return f"{' and '.join(failed)} {NOT_LEARNED} when trained without poison)", _setting(cell)


def _implant(full: Cell, cells: list[Cell]) -> tuple[str, str] | None:
    """(why, setting) when FF's backdoor at this setting did not implant; None when it did, or the
    attack is not a backdoor, or there is nothing to compare its ASR with."""
    attack = full.config.get("attack")
    if attack not in ATTACKS or not ATTACKS.get(attack).is_backdoor() or "asr" not in full.values:
        return None
    asr = float(np.mean(list(full.values["asr"].values())))
    clean = _clean_counterpart(full, cells)
    if clean is not None and "asr" in clean.values:
        base, against = float(np.mean(list(clean.values["asr"].values()))), "the clean run's"
    elif "asr_no_trigger" in full.values:
        base, against = float(np.mean(list(full.values["asr_no_trigger"].values()))), "the ASR without the trigger"
    else:
        return None
    if asr - base >= IMPLANT_MIN:
        return None
    return (f"FF's backdoor did not implant (ASR under {100 * IMPLANT_MIN:g} points above {against})",
            f"{_setting(full)} ({100 * asr:.1f}% vs {100 * base:.1f}%)")


def _setting(cell: Cell) -> str:
    """'sst2 bpa 0.005' — what a claim's settings differ in."""
    return " ".join(str(cell.config[k]) for k in ("task", "attack", "rate") if cell.config.get(k) is not None)


# ---- the tests ----------------------------------------------------------------------------------
def _pairs(claim: Claim, cells: list[Cell]) -> tuple[list[tuple[Cell, Cell]], list[tuple[str, str]]]:
    """(LoRA cell, FF cell) pairs the claim selects where both learned the task and FF's backdoor
    implanted; (why, setting) of the ones left out."""
    chosen, excluded = [], []
    for cell, full in full_pairs(cells):
        if not claim.selects(cell) or not is_default_setting(cell.kind, cell.config) \
                or claim.metric not in cell.values or claim.metric not in full.values:
            continue
        why = _not_learned(cell, full, cells) or _implant(full, cells)
        if why:
            excluded.append(why)
        else:
            chosen.append((cell, full))
    return chosen, excluded


def _pooled(a: dict, b: dict, statistic: str, seed_key: str, excluded: list[tuple[str, str]]) -> Evidence:
    """The report's paired comparison of a vs b, keyed by (setting, seed), as Evidence."""
    evidence = Evidence(statistic, excluded=excluded)
    if not a:
        evidence.testable = False
        evidence.why = evidence.excluded_text() or "the database holds no runs of this setting"
        return evidence
    r = stats.compare(a, b, stats.stable_seed(seed_key))
    evidence.n, evidence.settings = r.n_pairs, len({k[0] for k in a if k in b})
    evidence.seeds = len({k[1] for k in a if k in b})
    evidence.treatment, evidence.baseline, evidence.effect = r.mean_a, r.mean_b, r.paired_difference
    evidence.ci_low, evidence.ci_high, evidence.p, evidence.mdd = r.ci_low, r.ci_high, r.p_sign_flip, r.mdd
    evidence.significant = r.significant
    if r.n_pairs < stats.MIN_N:
        evidence.testable, evidence.why = False, r.verdict
    elif r.p_floor >= stats.ALPHA:
        evidence.why = r.verdict
    return evidence


def method_vs_full(claim: Claim, cells: list[Cell]) -> Evidence:
    chosen, excluded = _pairs(claim, cells)
    a, b = {}, {}
    for cell, full in chosen:
        for seed, value in cell.values[claim.metric].items():
            if seed in full.values[claim.metric]:
                a[(cell.id, seed)], b[(cell.id, seed)] = value, full.values[claim.metric][seed]
    return _pooled(a, b, "LoRA − FF", claim.id, excluded)


def vs_clean(claim: Claim, cells: list[Cell]) -> Evidence:
    a, b, excluded = {}, {}, []
    for cell in cells:
        if not claim.selects(cell) or claim.metric not in cell.values:
            continue
        clean = _clean_counterpart(cell, cells)
        if clean is None or claim.metric not in clean.values:
            continue
        if _did_not_learn(clean):
            excluded.append((f"{clean.method.label} {NOT_LEARNED})", _setting(cell)))
            continue
        for seed, value in cell.values[claim.metric].items():
            if seed in clean.values[claim.metric]:
                a[(cell.id, seed)], b[(cell.id, seed)] = value, clean.values[claim.metric][seed]
    return _pooled(a, b, "poisoned − clean", claim.id, excluded)


def trend(claim: Claim, cells: list[Cell]) -> Evidence:
    blocks: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    excluded = []
    for cell in cells:
        if not claim.selects(cell) or claim.metric not in cell.values or claim_value(cell, claim.axis) is None:
            continue
        clean = _clean_trained(cell, cells)
        if clean is not None and _did_not_learn(clean):
            excluded.append((f"{cell.method.label} {NOT_LEARNED} when trained without poison)",
                             f"{_setting(cell)} ({cell.method_label()}, {claim.axis} {fmt(claim_value(cell, claim.axis))})"))
            continue
        rest = tuple(sorted((k, str(v)) for k, v in cell.config.items() if k not in (claim.axis, *TREND_SKIP)))
        for seed, value in cell.values[claim.metric].items():
            blocks[(rest, seed)].append((float(claim_value(cell, claim.axis)), value))
    evidence = _trend_evidence(claim, blocks, f"ρ({claim.axis})")
    evidence.excluded = excluded
    return evidence


def gap_trend(claim: Claim, cells: list[Cell]) -> Evidence:
    chosen, excluded = _pairs(claim, cells)
    blocks: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for cell, full in chosen:
        rest = tuple(sorted((k, str(v)) for k, v in cell.config.items()
                            if k not in (claim.axis, *TREND_SKIP) and k in _comparison_keys(cell)))
        for seed, value in cell.values[claim.metric].items():
            if seed in full.values[claim.metric]:
                blocks[(rest, seed)].append((float(claim_value(cell, claim.axis)),
                                             value - full.values[claim.metric][seed]))
    evidence = _trend_evidence(claim, blocks, f"ρ({claim.axis}) of LoRA − FF")
    evidence.excluded = excluded
    return evidence


def _comparison_keys(cell: Cell) -> set[str]:
    """The config keys a method-vs-full pair agrees on (`aggregate.comparison_key`)."""
    return set(json.loads(comparison_key(cell))) - {"kind"}


def _trend_evidence(claim: Claim, blocks: dict[tuple, list[tuple[float, float]]], statistic: str) -> Evidence:
    evidence = Evidence(statistic)
    usable = [sorted(points) for points in blocks.values()
              if len({x for x, _ in points}) >= 3 and len({y for _, y in points}) >= 2]
    if not usable:
        evidence.testable = False
        evidence.why = ("the database holds no runs of this setting" if not blocks else
                        f"no block (one setting and seed) holds 3 or more {claim.axis} values with a varying {claim.metric}")
        return evidence
    xs = [np.array([x for x, _ in b]) for b in usable]
    ys = [np.array([y for _, y in b]) for b in usable]
    result = blocked_spearman(xs, ys, stats.stable_seed(claim.id))
    evidence.n, evidence.settings = sum(len(x) for x in xs), len(usable)
    evidence.seeds = len({key[1] for key, points in blocks.items() if sorted(points) in usable})
    evidence.effect, evidence.p = result["rho"], result["p"]
    evidence.significant = result["p"] < stats.ALPHA
    if result["floor"] >= stats.ALPHA:
        evidence.why = f"cannot reach p < {stats.ALPHA:g}: the smallest p of {result['assignments']} assignments is {result['floor']:.3g}"
    return evidence


def prompts_vs_full(claim: Claim, cells: list[Cell]) -> Evidence:
    chosen, excluded = _pairs(claim, cells)
    evidence = Evidence("LoRA − FF", excluded=excluded)
    ours, theirs, a, b, seeds = [], [], [], [], set()
    for cell, full in chosen:
        paired, _, _ = prompt_pairs(cell, full)
        for seed in paired:
            if seed not in cell.values[claim.metric] or seed not in full.values[claim.metric]:
                continue
            ours += cell.outcomes[seed]["triggered"]
            theirs += full.outcomes[seed]["triggered"]
            a.append(cell.values[claim.metric][seed])
            b.append(full.values[claim.metric][seed])
            seeds.add(seed)
    if not ours:
        evidence.testable = False
        evidence.why = evidence.excluded_text() or "the database holds no scored prompts of this setting"
        return evidence
    test = stats.mcnemar(ours, theirs)
    evidence.statistic = "LoRA − FF (McNemar on the prompts)"
    evidence.n, evidence.settings, evidence.seeds = test.pairs, len(chosen), len(seeds)
    evidence.treatment, evidence.baseline = float(np.mean(a)), float(np.mean(b))
    evidence.effect, evidence.p, evidence.significant = float(np.mean(a) - np.mean(b)), test.p, test.significant
    evidence.counts = f"b = {test.b}, c = {test.c} discordant"
    if not test.significant and test.b + test.c < stats.MIN_DISCORDANT:
        evidence.why = test.verdict
    return evidence


TESTS: dict[str, Callable[[Claim, list[Cell]], Evidence]] = {
    "method_vs_full": method_vs_full, "vs_clean": vs_clean, "trend": trend, "gap_trend": gap_trend,
    "prompts_vs_full": prompts_vs_full,
}


# ---- the blocked permutation test ---------------------------------------------------------------
def blocked_spearman(xs: list[np.ndarray], ys: list[np.ndarray], seed: int = 0) -> dict[str, Any]:
    """Mean within-block Spearman ρ of y against x and its two-sided p-value under shuffling x
    within each block: exact over every assignment when there are at most
    `stats.EXACT_ASSIGNMENTS`, else that many seeded random ones (p then counts the observed
    one, so it is never 0). Spearman's ρ is Pearson's r of the ranks (ties: average ranks)."""
    assignments = math.prod(math.factorial(len(x)) for x in xs)
    exact = assignments <= stats.EXACT_ASSIGNMENTS
    rng = np.random.default_rng(seed)
    observed, total = 0.0, np.zeros(1)
    for x, y in zip(xs, ys):
        rx, ry = sps.rankdata(x), sps.rankdata(y)
        if exact:
            perms = np.array(list(itertools.permutations(range(len(x)))))
        else:
            perms = np.argsort(rng.random((stats.EXACT_ASSIGNMENTS, len(x))), axis=1)
        rhos = _rank_correlation(rx[perms], ry)
        observed += float(_rank_correlation(rx[None, :], ry)[0])
        # exact: every combination of the blocks' permutations; Monte Carlo: draw i of each block
        total = (total[:, None] + rhos[None, :]).ravel() if exact else total + rhos
    observed /= len(xs)
    drawn = np.abs(total / len(xs))
    hits = int(np.sum(drawn >= abs(observed) - 1e-12))
    if exact:
        p, floor = hits / assignments, float(np.mean(drawn >= drawn.max() - 1e-12))
    else:
        p, floor = (1 + hits) / (1 + len(drawn)), 1.0 / (1 + len(drawn))
    return {"rho": observed, "p": p, "floor": floor, "assignments": assignments}


def _rank_correlation(ranked_x: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of ranked_x with ry (0 where a side is constant)."""
    cx = ranked_x - ranked_x.mean(axis=1, keepdims=True)
    cy = ry - ry.mean()
    norm = np.sqrt((cx**2).sum(axis=1)) * math.sqrt(float(cy @ cy))
    return np.divide(cx @ cy, norm, out=np.zeros(len(cx)), where=norm > 0)


# ---- output -------------------------------------------------------------------------------------
COLUMNS = ("figure", "claim", "verdict", "paper", "ttrlab", "statistic", "effect", "ci", "p", "mdd", "n", "settings",
           "seeds", "why")
COMPACT = ("figure", "claim", "verdict", "paper", "ttrlab", "effect", "ci", "p", "seeds", "why")  # docs/results


def display(result: ClaimResult) -> dict[str, Any]:
    """A claim's row as the report and `--compare-paper` print it (differences of shares in
    percentage points)."""
    c, e = result.claim, result.evidence
    is_rho = e.statistic.startswith("ρ")
    scale, unit = (100.0, " pp") if METRICS.info(c.metric).percent and not is_rho else (1.0, "")
    measured = ""
    if not math.isnan(e.treatment):
        left, right = ("poisoned", "clean") if e.statistic.startswith("poisoned") else ("LoRA", "FF")
        measured = f"{left} {fmt(scale * e.treatment, 2)}, {right} {fmt(scale * e.baseline, 2)}"
    elif is_rho and not math.isnan(e.effect):
        measured = f"mean ρ = {e.effect:+.2f} over {e.settings} blocks"
    why = [e.why] if e.why else []
    if e.excluded and e.excluded_text() != e.why:
        why.append(f"left out: {e.excluded_text()}")
    if c.beyond:
        why.append(f"not tested here: {c.beyond}")
    ci = e.counts or ("–" if math.isnan(e.ci_low) else f"[{scale * e.ci_low:+.3g}, {scale * e.ci_high:+.3g}]{unit}")
    return {
        "id": c.id, "figure": _figure_label(c.figure), "claim": c.claim, "paper": c.paper, "ttrlab": measured,
        "metric": METRICS.info(c.metric).label, "expect": c.expect, "statistic": e.statistic,
        "effect": "–" if math.isnan(e.effect) else f"{scale * e.effect:+.3g}{unit}", "ci": ci,
        "p": fmt(e.p, 3), "mdd": "–" if math.isnan(e.mdd) else f"{scale * e.mdd:.3g}{unit}",
        "n": e.n, "settings": e.settings, "seeds": e.seeds, "verdict": result.verdict, "why": "; ".join(why),
    }


def _figure_label(figure: str) -> str:
    return {"table2": "Table 2", "table3": "Table 3", "table_e1": "Table E.1"}.get(figure, f"Fig. {figure}")


def summary(results: list[ClaimResult]) -> str:
    """'31 claims: 9 same direction, significant; ...' — how many rows got each verdict."""
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    return f"{len(results)} claims: " + "; ".join(f"{n} {v}" for v, n in counts.items() if n) + "."


def markdown(results: list[ClaimResult], columns: tuple[str, ...] = COLUMNS) -> str:
    return f"{to_markdown([display(r) for r in results], columns)}\n{summary(results)}\n"


def csv(results: list[ClaimResult]) -> str:
    return to_csv([display(r) for r in results], ("id", *COLUMNS, "metric", "expect"))
