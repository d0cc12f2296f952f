"""From evidence to verdicts: one value per independent unit, tested across units at the
sequential design's latest look, corrected over the claim's family, read against the claim's
expectation — and, for a claim not yet decided, the seeds and hours that would decide it.

Per claim (not `described`):
1. the units of the latest complete look (`SequentialDesign.look_at`: the first L seeds);
2. `stats.unit_test`: the one-sample t-test of the unit values (p_t), its 95% interval, the exact
   sign-flip p beside it, the minimum detectable difference, and for a claim of no effect the
   TOST p against its margin;
3. p_seq = p / w_look (the union bound over the declared looks);
4. Holm over the primary family, Benjamini–Hochberg over the secondaries, on p_seq; an all_of
   primary takes the largest p_seq of its components (an intersection-union test needs no
   correction among them);
5. the verdict from the adjusted p. A claim of no effect is *equivalent within ±m* when its
   adjusted TOST p is below α, *differs* when its two-sided p (sequential, then Bonferroni over
   its family) is, else *inconclusive* with the smallest difference the design could have seen.

The mixed model (value ~ setting as fixed effects with sum-to-zero contrasts, a random intercept
per unit; statsmodels) is the secondary analysis of contrasts that pool settings: its intercept
is the effect averaged over settings with the unit's correlation modelled instead of averaged out.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from ttrlab.report import stats
from ttrlab.report.aggregate import Cell
from ttrlab.report.claims.cells import CellIndex
from ttrlab.report.claims.declared import Claim, ClaimsFile
from ttrlab.report.claims.load import load_claims
from ttrlab.report.claims.designs import DESIGNS, Context, Evidence

AS_PAPER = "as the paper: significant after correction"
OPPOSITE = "opposite to the paper: significant after correction"
UNDECIDED_SAME = "undecided (same direction)"
UNDECIDED_OPPOSITE = "undecided (opposite direction)"
UNDECIDED_ZERO = "undecided (no difference measured)"
EQUIVALENT = "equivalent within ±{margin}"
DIFFERS = "differs: significant after correction, the paper sees none"
INCONCLUSIVE = "inconclusive (the design could only have seen ≥ {mdd})"
NOT_TESTABLE = "not testable here"
DESCRIBED_HOLDS = "described: holds inside the theorem's assumptions"
DESCRIBED_FAILS = "described: does not hold inside the theorem's assumptions"
DESCRIBED = "described"
POWER = 0.8


@dataclass
class MixedFit:
    estimate: float
    se: float
    p: float
    note: str = ""


@dataclass
class Decision:
    claim: Claim
    evidence: Evidence
    seeds: int = 0  # distinct seeds the evidence holds
    look_seeds: int | None = None  # seeds of the latest complete look (the units tested)
    look: int | None = None
    units: dict[tuple, float] = field(default_factory=dict)  # the tested units' values
    test: stats.UnitTest | None = None
    p_raw: float = math.nan  # the look's own p of the deciding test (t, or TOST for no effect)
    p_seq: float = math.nan
    p_adj: float = math.nan
    p_differs_adj: float = math.nan  # no-effect claims: the two-sided p, sequential and Bonferroni
    treatment: float = math.nan  # the arms' means over the tested units (contrasts)
    baseline: float = math.nan
    mixed: MixedFit | None = None
    verdict: str = NOT_TESTABLE
    why: str = ""
    parts: list[tuple[str, str]] = field(default_factory=list)  # all_of: (claim id, verdict) of each part
    seeds_needed: int | None = None  # the look at which the observed effect would be decided (power 0.8)
    hours_per_seed: float = math.nan  # recorded run hours of the claim's cells, per seed
    devices: tuple[str, ...] = ()

    @property
    def testable(self) -> bool:
        return self.test is not None and self.test.n >= 2

    @property
    def decided(self) -> bool:
        return self.verdict in (AS_PAPER, OPPOSITE, DIFFERS) or self.verdict.startswith("equivalent")

    def hours_to_decide(self) -> float:
        if self.seeds_needed is None or math.isnan(self.hours_per_seed):
            return math.nan
        return max(0, self.seeds_needed - self.seeds) * self.hours_per_seed


def decide(cells: list[Cell], declared: ClaimsFile | None = None, exclusions: bool = True,
           mixed_model: bool = True) -> list[Decision]:
    """Every claim's decision, in the claims file's order (`mixed_model`: fit the secondary
    analysis too; it is most of the time this takes)."""
    declared = declared or load_claims()
    index = CellIndex(cells)
    context = Context(index, declared, exclusions)
    decisions = {c.id: _tested(c, DESIGNS.get(c.design).collect(c, context), declared, index, mixed_model)
                 for c in declared.claims if c.design != "all_of"}
    for claim in declared.claims:
        if claim.design == "all_of":
            decisions[claim.id] = _intersection(claim, [decisions[i] for i in claim.of_claims])
    for role in ("primary", "secondary"):
        family = [decisions[c.id] for c in declared.family(role)]
        correction = stats.holm if declared.families.get(role, "holm") == "holm" else stats.benjamini_hochberg
        for decision, p in zip(family, correction([d.p_seq for d in family])):
            decision.p_adj = p
        tested = sum(not math.isnan(d.p_seq) for d in family)
        for decision in family:
            if decision.claim.is_null and decision.test is not None:
                two_sided = declared.sequential.adjust(decision.test.p_t, decision.look)
                decision.p_differs_adj = stats.bonferroni(two_sided, tested)
    for claim in declared.claims:
        decision = decisions[claim.id]
        decision.verdict = _verdict(decision, declared)
        if claim.role != "described" and claim.design != "all_of":
            _price(decision, declared, index, sum(not math.isnan(decisions[c.id].p_seq) for c in declared.family(claim.role)))
    for claim in declared.claims:  # an intersection is decided when its last part is
        if claim.design == "all_of":
            decisions[claim.id].parts = [(i, decisions[i].verdict) for i in claim.of_claims]
        if claim.design == "all_of" and not decisions[claim.id].decided:
            parts = [decisions[i] for i in claim.of_claims if not decisions[i].decided]
            needed = [p.seeds_needed for p in parts]
            if parts and None not in needed:
                decisions[claim.id].seeds_needed = max(needed)
    return [decisions[c.id] for c in declared.claims]


def _tested(claim: Claim, evidence: Evidence, declared: ClaimsFile, index: CellIndex, mixed_model: bool) -> Decision:
    decision = Decision(claim, evidence)
    decision.devices = tuple(sorted({d for cid in evidence.cells for d in index.by_id[cid].devices}))
    seconds = [float(np.mean(list(index.by_id[cid].seconds.values()))) for cid in evidence.cells
               if index.by_id[cid].seconds]
    decision.hours_per_seed = sum(seconds) / 3600 if seconds else math.nan
    if claim.role == "described" or not evidence.rows:
        decision.why = evidence.why
        return decision
    seeds = evidence.seeds()
    decision.seeds = len(seeds)
    look = declared.sequential.look_at(len(seeds))
    if look is None:
        decision.why = (f"n too small: {len(seeds)} seed{'s' if len(seeds) != 1 else ''}; the declared design's first look "
                        f"is at {declared.sequential.looks[0]}")
        return decision
    decision.look, decision.look_seeds = look, declared.sequential.looks[look]
    chosen = set(seeds[: decision.look_seeds])
    decision.units = evidence.units(chosen)
    test = stats.unit_test(list(decision.units.values()), claim.margin, stats.stable_seed(claim.id))
    decision.test = test
    arms = [(t, b) for unit, t, b in evidence.arms if unit[-1] in chosen]
    if arms:
        decision.treatment, decision.baseline = float(np.mean([t for t, _ in arms])), float(np.mean([b for _, b in arms]))
    decision.p_raw = test.p_tost if claim.is_null else (test.p_sign_flip if declared.test == "sign_flip" else test.p_t)
    if claim.is_null and test.sd == 0:
        decision.why = "every unit gave the same value: no spread to test equivalence against the margin"
    decision.p_seq = declared.sequential.adjust(decision.p_raw, look)
    if mixed_model:
        decision.mixed = _mixed_model([r for r in evidence.rows if r[0][-1] in chosen])
    return decision


def _intersection(claim: Claim, parts: list[Decision]) -> Decision:
    """An all_of claim: its p is the largest of its parts' (each must hold on its own)."""
    decision = Decision(claim, Evidence("every component"))
    if parts and all(not math.isnan(p.p_seq) for p in parts):
        decision.p_seq = max(p.p_seq for p in parts)
        decision.seeds = min(p.seeds for p in parts)
        decision.look_seeds = min(p.look_seeds for p in parts if p.look_seeds)
    else:
        decision.why = "; ".join(f"{p.claim.id}: {p.why or 'not testable'}" for p in parts if math.isnan(p.p_seq))
    decision.hours_per_seed = sum(p.hours_per_seed for p in parts if not math.isnan(p.hours_per_seed)) or math.nan
    decision.evidence.cells = {c for p in parts for c in p.evidence.cells}
    decision.devices = tuple(sorted({d for p in parts for d in p.devices}))
    decision.evidence.excluded = [e for p in parts for e in p.evidence.excluded]
    return decision


def _verdict(decision: Decision, declared: ClaimsFile) -> str:
    claim, alpha = decision.claim, declared.alpha
    if claim.role == "described":
        if decision.evidence.holds is None:
            return NOT_TESTABLE if decision.evidence.why else DESCRIBED
        return DESCRIBED_HOLDS if decision.evidence.holds else DESCRIBED_FAILS
    if claim.design == "all_of":
        if math.isnan(decision.p_seq):
            return NOT_TESTABLE
        if decision.p_adj < alpha:
            return EQUIVALENT.format(margin="margin of each part")
        return "inconclusive (not every part is equivalent)"
    if decision.test is None or math.isnan(decision.p_raw):
        return NOT_TESTABLE
    if claim.is_null:
        if decision.p_adj < alpha:
            return EQUIVALENT.format(margin=_amount(claim, claim.margin))
        if decision.p_differs_adj < alpha:
            return DIFFERS
        return INCONCLUSIVE.format(mdd=_amount(claim, decision.test.mdd))
    effect = decision.test.mean
    if effect == 0:
        return UNDECIDED_ZERO
    same = (effect < 0) == (claim.expect == "lower")
    if decision.p_adj < alpha:
        return AS_PAPER if same else OPPOSITE
    return UNDECIDED_SAME if same else UNDECIDED_OPPOSITE


def _amount(claim: Claim, value: float | None) -> str:
    """A margin or MDD in the claim's units: points for shares, ρ for trends."""
    from ttrlab.evaluation import METRICS

    if value is None or math.isnan(value):
        return "–"
    if claim.design == "trend":
        return f"{value:.2g} in ρ"
    if claim.metric and METRICS.info(claim.metric).percent or claim.metric in ("clean.accuracy", "clean.f1"):
        return f"{100 * value:.2g} points"
    return f"{value:.3g}"


def _price(decision: Decision, declared: ClaimsFile, index: CellIndex, family_size: int) -> None:
    """The look at which a test of the observed effect and spread would have power 0.8 at the
    Bonferroni level of its family (a conservative stand-in for Holm or BH)."""
    test = decision.test
    if decision.decided or test is None or test.n < 2 or not (test.sd > 0) or decision.look_seeds is None:
        return
    units_per_seed = test.n / decision.look_seeds
    design = declared.sequential
    for j, seeds in enumerate(design.looks):
        if seeds <= decision.look_seeds:
            continue
        level = design.level(j) / max(family_size, 1)
        n = int(round(seeds * units_per_seed))
        if decision.claim.is_null:
            power = stats.tost_power(test.mean, test.sd, n, level, decision.claim.margin)
        else:
            power = stats.t_power(test.mean, test.sd, n, level)
        if power >= POWER:
            decision.seeds_needed = seeds
            return


def _mixed_model(rows: list[tuple[tuple, str, float]]) -> MixedFit | None:
    """value ~ C(setting, Sum) + (1 | unit), by REML; None where it does not apply (one setting,
    fewer than 3 units, or no more rows than units)."""
    units = {r[0] for r in rows}
    settings = {r[1] for r in rows}
    if len(units) < 3 or len(settings) < 2 or len(rows) <= len(units):
        return None
    import pandas as pd
    import statsmodels.formula.api as smf

    frame = pd.DataFrame({"unit": [str(r[0]) for r in rows], "setting": [r[1] for r in rows], "value": [r[2] for r in rows]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = smf.mixedlm("value ~ C(setting, Sum)", frame, groups=frame["unit"]).fit(reml=True)
        except (ValueError, np.linalg.LinAlgError) as error:
            return MixedFit(math.nan, math.nan, math.nan, f"did not fit: {type(error).__name__}")
    estimate, se = float(fit.params["Intercept"]), float(fit.bse["Intercept"])
    if any("boundary" in str(w.message).lower() for w in caught) or float(fit.cov_re.iloc[0, 0]) <= 1e-12:
        # with the unit variance estimated as 0 the model counts every row as independent: the
        # very pseudo-replication the unit-level test avoids, so no p
        return MixedFit(estimate, se, math.nan, "no p: the unit variance is estimated at 0, rows would count as independent")
    note = "did not converge" if any("converge" in str(w.message).lower() for w in caught) else ""
    # the intercept's t on (units − 1) degrees of freedom (containment), not the Wald z
    p = float(2 * sps.t.sf(abs(estimate / se), len(units) - 1)) if se > 0 else math.nan
    return MixedFit(estimate, se, p, note)


def summary(decisions: list[Decision]) -> dict[str, Any]:
    """Counts per role and verdict, and how many primary claims are decided."""
    primary = [d for d in decisions if d.claim.role == "primary"]
    return {
        "primary": len(primary),
        "decided": sum(d.decided for d in primary),
        "as_paper": sum(d.verdict == AS_PAPER for d in primary),
        "opposite": sum(d.verdict == OPPOSITE for d in primary),
        "equivalent": sum(d.verdict.startswith("equivalent") for d in primary),
        "differs": sum(d.verdict == DIFFERS for d in primary),
        "not_testable": sum(d.verdict == NOT_TESTABLE for d in primary),
        "undecided": sum(not d.decided and d.verdict != NOT_TESTABLE for d in primary),
        "secondary": sum(d.claim.role == "secondary" for d in decisions),
        "secondary_decided": sum(d.decided for d in decisions if d.claim.role == "secondary"),
    }
