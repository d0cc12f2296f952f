"""The verdict tables: one row per declared claim, as the report, `--compare-paper` and
docs/results print them (effects of shares in percentage points, ρ as it is)."""
from __future__ import annotations

import math
from typing import Any

from ttrlab.evaluation import METRICS
from ttrlab.report.aggregate import fmt, to_csv, to_markdown
from ttrlab.report.claims.declared import ClaimsFile
from ttrlab.report.claims.decide import NOT_TESTABLE, Decision, summary

COLUMNS = ("figure", "role", "claim", "verdict", "paper", "ttrlab", "statistic", "effect", "ci", "p_look", "p_seq",
           "p_adjusted", "p_sign_flip", "mdd", "units", "seeds", "to_decide", "without_exclusions", "mixed_model", "why")
COMPACT = ("figure", "role", "claim", "verdict", "effect", "ci", "p_look", "p_adjusted", "units", "to_decide",
           "without_exclusions")


def _scale(decision: Decision) -> tuple[float, str]:
    claim = decision.claim
    if claim.design in ("trend", "describe", "all_of") or not claim.metric:
        return 1.0, ""
    return (100.0, " pp") if METRICS.info(claim.metric).percent or claim.metric.startswith(("clean.", "triggered.")) \
        else (1.0, "")


def display(decision: Decision, without: Decision | None = None) -> dict[str, Any]:
    """A claim's row; `without`: the same claim decided without the manipulation checks."""
    claim, evidence, test = decision.claim, decision.evidence, decision.test
    scale, unit = _scale(decision)
    effect = "–" if test is None else f"{scale * test.mean:+.3g}{unit}"
    ci = "–" if test is None or math.isnan(test.ci_low) else f"[{scale * test.ci_low:+.3g}, {scale * test.ci_high:+.3g}]{unit}"
    ttrlab = ""
    if not math.isnan(decision.treatment):
        left, right = evidence.statistic.split(" − ") if " − " in evidence.statistic else ("treatment", "baseline")
        lift = " (lift over each arm's clean run)" if claim.lift else ""
        ttrlab = f"{left} {scale * decision.treatment:.3g}, {right} {scale * decision.baseline:.3g}{lift}"
    elif evidence.description:
        ttrlab = evidence.description
    elif test is not None and evidence.statistic.startswith("ρ"):
        ttrlab = f"mean ρ {test.mean:+.2f} over {test.n} units"
    elif decision.parts:
        ttrlab = "; ".join(f"{part}: {verdict}" for part, verdict in decision.parts)
    why = [decision.why] if decision.why else []
    if test is not None and test.n >= 2 and test.sd == 0:
        why.append("every unit gave the same value: t is undefined, the p is the exact sign-flip's")
    if evidence.excluded and evidence.excluded_text() != decision.why:
        why.append(f"left out: {evidence.excluded_text()}")
    if evidence.discordant:
        b, c = evidence.discordant
        why.append(f"prompts: only FF's answer hit {b}×, only LoRA's {c}× (McNemar's discordant pairs over the seeds: "
                   "a description within runs, not this claim's test)")
    if decision.seeds and decision.look_seeds and decision.seeds > decision.look_seeds:
        why.append(f"{decision.seeds} seeds held; tested at the look of {decision.look_seeds} (the rest enter at the next look)")
    if claim.beyond:
        why.append(f"not tested here: {claim.beyond}")
    mixed = decision.mixed
    return {
        "id": claim.id, "figure": claim.figure_label(), "role": claim.role if not claim.of else f"secondary of {claim.of}",
        "claim": claim.claim, "paper": claim.paper, "ttrlab": ttrlab, "verdict": decision.verdict,
        "metric": METRICS.info(claim.metric).label if claim.metric else "", "expect": claim.expect,
        "statistic": f"{claim.metric}: {evidence.statistic}" if claim.metric else evidence.statistic,
        "effect": effect, "ci": ci,
        "p_look": fmt(decision.p_raw, 3) + (" (TOST)" if claim.is_null and not math.isnan(decision.p_raw) else ""),
        "p_seq": fmt(decision.p_seq, 3), "p_adjusted": fmt(decision.p_adj, 3),
        "p_sign_flip": "–" if test is None else fmt(test.p_sign_flip, 3),
        "mdd": "–" if test is None or math.isnan(test.mdd) else f"{scale * test.mdd:.3g}{unit}",
        "units": "–" if test is None else f"{test.n} ({decision.look_seeds} seeds)",
        "seeds": decision.seeds,
        "to_decide": _to_decide(decision),
        "without_exclusions": _sensitivity(decision, without),
        "mixed_model": "–" if mixed is None else (
            f"{scale * mixed.estimate:+.3g}{unit} ± {scale * mixed.se:.2g}, p {fmt(mixed.p, 3)}"
            + (f" ({mixed.note})" if mixed.note else "")),
        "why": "; ".join(why),
    }


def _to_decide(decision: Decision) -> str:
    if decision.decided or decision.claim.role == "described":
        return ""
    if decision.verdict == NOT_TESTABLE or decision.look_seeds is None:
        return "–"
    if decision.seeds_needed is None:
        return "beyond the declared looks"
    hours = decision.hours_to_decide()
    where = "/".join(decision.devices) or "device"
    cost = "" if math.isnan(hours) else f", ~{hours:.1f} {where} run-hours"
    return f"{decision.seeds_needed} seeds{cost}"


def _sensitivity(decision: Decision, without: Decision | None) -> str:
    if without is None:
        return ""
    if without.verdict == decision.verdict and not decision.evidence.excluded:
        return "same (nothing left out)"
    p = "" if math.isnan(without.p_adj) else f", p adj {fmt(without.p_adj, 3)}"
    effect = ""
    if without.test is not None:
        scale, unit = _scale(without)
        effect = f", {scale * without.test.mean:+.3g}{unit}"
    return f"{without.verdict}{effect}{p}"


def rows(decisions: list[Decision], without: list[Decision] | None = None) -> list[dict[str, Any]]:
    return [display(d, w) for d, w in zip(decisions, without or [None] * len(decisions))]


def header(declared: ClaimsFile) -> str:
    """What the verdicts rest on, in one paragraph."""
    return (f"Claims file {declared.source} version {declared.version}, sha256 {declared.sha256[:16]}…; unit: "
            f"{' × '.join(declared.unit)}; test: {'one-sample t' if declared.test == 't' else 'exact sign-flip'} of the unit "
            f"values at α = {declared.alpha:g}; {declared.sequential.describe()}; primary family: "
            f"{declared.families.get('primary')}, secondary: {declared.families.get('secondary')}.")


def headline(decisions: list[Decision]) -> str:
    """'3 of 10 primary claims decided after correction: ...' — the first line a reader needs."""
    s = summary(decisions)
    parts = [f"{s[k]} {label}" for k, label in (("as_paper", "as the paper"), ("opposite", "opposite to the paper"),
                                                  ("equivalent", "equivalent within their margin"),
                                                  ("differs", "differing where the paper sees no effect")) if s[k]]
    rest = [f"{s['undecided']} undecided"] + ([f"{s['not_testable']} not testable here"] if s["not_testable"] else [])
    decided = f"{s['decided']} of {s['primary']} primary claims decided after correction"
    return f"{decided}{': ' + ', '.join(parts) if parts else ''}; {', '.join(rest)}."


def markdown(decisions: list[Decision], without: list[Decision] | None = None, columns: tuple[str, ...] = COLUMNS) -> str:
    return to_markdown(rows(decisions, without), columns)


def csv(decisions: list[Decision], without: list[Decision] | None = None) -> str:
    return to_csv(rows(decisions, without), ("id", *COLUMNS, "metric", "expect"))


BESIDE = ("verdict", "effect", "ci", "p_adjusted", "units")


def beside(left: list[Decision], right: list[Decision], labels: tuple[str, str]) -> str:
    """Two claims files' verdicts on the same claims side by side, one row per claim id of
    `left` (the claim's own words), `right`'s row where it declares the same id."""
    right_rows = {row["id"]: row for row in rows(right)}
    table = []
    for row in rows(left):
        other = right_rows.get(row["id"], {})
        entry = {"figure": row["figure"], "claim": row["claim"]}
        for label, source in zip(labels, (row, other)):
            for column in BESIDE:
                entry[f"{label}: {column}"] = source.get(column, "not declared there" if column == "verdict" else "–")
        table.append(entry)
    return to_markdown(table, ("figure", "claim", *(f"{label}: {c}" for label in labels for c in BESIDE)))
