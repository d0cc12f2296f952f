"""`ttrlab sweep SPEC --db DB --until-decided [--budget HOURS] [--max-seeds N] [--claims FILE]`:
run the spec, then add seeds look by look to the runs of the primary claims it can still decide.

After the spec's own seeds, each round decides every declared claim on the database
(`report.claims.decide`, the sequential p-values), and for each primary claim that is undecided,
testable and whose runs this spec plans:
- the look at which its observed effect and spread would be decided (`Decision.seeds_needed`)
  and the run-hours that costs (its cells' recorded seconds per seed × the seeds to add);
- claims whose price fits the remaining budget are extended, cheapest first, by the seeds of
  their *next* look only, so a claim stops at the first look that decides it;
- the new runs are the spec's points behind that claim (its cells, their clean runs) at the new
  seeds, run like any sweep (skipping what the database holds).
The loop ends when no claim can be advanced: all decided, beyond the declared looks or
`--max-seeds`, over budget, or needing runs this spec does not plan. Every p-value it reads is
the design's (α spent over the declared looks), so looking after every round inflates nothing.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from ttrlab.core.errors import UserError
from ttrlab.sweep.spec import PlannedRun, SweepSpec


@dataclass
class Step:
    claim: str
    seeds: list[int]  # the claim's seeds after this step (its next look)
    runs: list[PlannedRun]
    hours: float  # estimated run-hours of the step


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # claim -> why it is not advanced
    decided: list[str] = field(default_factory=list)


def spec_cells(spec: SweepSpec) -> dict[str, list[PlannedRun]]:
    """{cell id: the spec's planned runs of that cell} (a cell is a run's identity without its seed)."""
    from ttrlab.report.aggregate import cell_config, cell_id

    cells: dict[str, list[PlannedRun]] = {}
    for run in spec.expand().runs:
        cells.setdefault(cell_id(run.kind, cell_config(run.kind, run.config_dict)), []).append(run)
    return cells


def plan_round(spec: SweepSpec, decisions: list, looks: tuple[int, ...], budget_hours: float, max_seeds: int) -> Plan:
    """What the next round would run: for each undecided primary claim this spec can advance,
    its next declared look's runs, cheapest claims first, within `budget_hours`."""
    from ttrlab.kinds.registry import RUN_KINDS

    kind = RUN_KINDS.get(spec.kind)
    cells = spec_cells(spec)
    plan = Plan()
    candidates = []
    for decision in decisions:
        claim = decision.claim
        if claim.role != "primary":
            continue
        if decision.decided:
            plan.decided.append(claim.id)
            continue
        parts = [decision] if claim.design != "all_of" else [d for d in decisions if d.claim.id in claim.of_claims]
        used = {c for part in parts for c in part.evidence.cells}
        if not used or not (used & set(cells)):
            plan.skipped[claim.id] = "this spec plans none of its runs"
            continue
        outside = used - set(cells)
        if outside:
            plan.skipped[claim.id] = f"{len(outside)} of its cells are not in this spec"
            continue
        if decision.seeds_needed is None:
            plan.skipped[claim.id] = ("not testable yet" if decision.look_seeds is None and not decision.units
                                      else "its observed effect would not be decided within the declared looks")
            continue
        held = sorted({s for part in parts for s in part.evidence.seeds()}, key=_seed_order)
        ahead = [look for look in looks if len(held) < look <= max_seeds]
        if not ahead:
            plan.skipped[claim.id] = f"its next look is beyond --max-seeds {max_seeds}"
            continue
        seeds = (held + [s for s in range(10 * max_seeds + len(held)) if s not in held])[: ahead[0]]
        runs = [_with_seed(kind, run, seed) for cell in sorted(used) for run in cells[cell][:1] for seed in seeds
                if seed not in held]
        hours = decision.hours_to_decide()
        candidates.append((hours if not math.isnan(hours) else math.inf, claim.id, seeds, runs, decision))
    spent = 0.0
    for hours, claim_id, seeds, runs, decision in sorted(candidates, key=lambda c: (c[0], c[1])):
        step_hours = (len(seeds) - decision.seeds) * (decision.hours_per_seed if not math.isnan(decision.hours_per_seed) else 0)
        if hours > budget_hours - spent:
            plan.skipped[claim_id] = f"deciding it would cost ~{hours:.2f} run-hours, over the {budget_hours - spent:.2f} left"
            continue
        spent += step_hours
        plan.steps.append(Step(claim_id, seeds, runs, step_hours))
    return plan


def _seed_order(seed: Any) -> tuple:
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def _with_seed(kind, run: PlannedRun, seed: int) -> PlannedRun:
    values = {**run.config_dict, "seed": seed}
    config = kind.config_from_dict(values)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(values)
    return PlannedRun(run.kind, config, config_dict, kind.run_key(config), "until-decided", dict(run.point))


def extension_spec(spec: SweepSpec, runs: list[PlannedRun]) -> SweepSpec:
    """A spec of exactly these runs (stored as its own sweep, named after the spec)."""
    import yaml

    from ttrlab.sweep.spec import Expansion

    unique = list({run.run_key: run for run in runs}.values())
    derived = SweepSpec(name=f"{spec.name} (until decided)", kind=spec.kind, base={}, seeds=sorted({r.config_dict.get("seed", 0) for r in unique}),
                        grids=[{"name": "until-decided", "base": {}, "axes": {}, "include": [r.config_dict for r in unique],
                                "exclude": [], "seeds": None}], resources=spec.resources)
    derived.source_text = yaml.safe_dump({"name": derived.name, "kind": spec.kind, "runs": [r.config_dict for r in unique]},
                                         sort_keys=False)
    derived._expansion = Expansion(runs=unique, points=len(unique), duplicates=0)
    return derived


def run_until_decided(spec: SweepSpec, db: str | os.PathLike, *, budget_hours: float | None = None,
                      max_seeds: int | None = None, claims: str | None = None,
                      run: Callable[[SweepSpec], dict[str, Any]], say: Callable[[str], None] = print) -> dict[str, Any]:
    """The loop above; `run(spec)` runs a spec into `db` (the sweep command's `run_sweep` with its
    options) and returns its summary. Returns what was decided, spent and why it stopped."""
    from ttrlab.report.aggregate import build_cells
    from ttrlab.report.claims import decide, load_claims
    from ttrlab.sweep.store import FINISHED, ResultStore

    declared = load_claims(claims)
    horizon = declared.sequential.max_seeds
    max_seeds = horizon if max_seeds is None else max_seeds
    if not 1 <= max_seeds <= horizon:
        raise UserError(f"--max-seeds {max_seeds} must be between 1 and the claims file's last declared look, {horizon}")
    if budget_hours is not None and not (budget_hours >= 0 and math.isfinite(budget_hours)):
        raise UserError(f"--budget {budget_hours!r} must be a number of hours >= 0")
    budget = math.inf if budget_hours is None else budget_hours
    summaries = [run(spec)]
    spent, rounds = 0.0, 0
    while True:
        with ResultStore(db, create=False) as store:
            decisions = decide(build_cells(store.runs(status=FINISHED)), declared, mixed_model=False)
        plan = plan_round(spec, decisions, declared.sequential.looks, budget - spent, max_seeds)
        if not plan.steps:
            break
        rounds += 1
        runs = [r for step in plan.steps for r in step.runs]
        say(f"until decided, round {rounds}: " + "; ".join(
            f"{s.claim} to {len(s.seeds)} seeds (~{s.hours:.2f} run-hours)" for s in plan.steps))
        summary = run(extension_spec(spec, runs))
        summaries.append(summary)
        spent += _run_hours(db, [r.run_key for r in runs], spec.kind)
        if summary.get("interrupted") or summary.get("ran", 0) == 0 or summary.get("failed"):
            plan.skipped["(all)"] = ("the round was interrupted" if summary.get("interrupted") else
                                     "a run of the round failed" if summary.get("failed") else "the round ran nothing")
            break
    return {"rounds": rounds, "run_hours": spent, "decided": plan.decided, "skipped": plan.skipped,
            "summaries": summaries, "decisions": decisions}


def first_round(spec: SweepSpec, db, budget_hours: float | None, max_seeds: int | None, claims: str | None,
                retry_failed: bool = False) -> str:
    """What `--until-decided` would do now, as text: the spec's runs still to run, then the first
    round as the database stands (later rounds depend on its results)."""
    from ttrlab.report.aggregate import build_cells
    from ttrlab.report.claims import decide, load_claims
    from ttrlab.sweep.runner import plan
    from ttrlab.sweep.store import FINISHED, EmptyDatabase, ResultStore, database_url, sqlite_path

    declared = load_claims(claims)
    max_seeds = declared.sequential.max_seeds if max_seeds is None else max_seeds
    todo = len(plan(spec, db, retry_failed)["todo"])
    lines = [f"sweep {spec.name!r}: {todo} of its {len(spec.expand().runs)} runs to run first; then seeds until decided "
             f"({declared.sequential.describe()}, at most {max_seeds} seeds"
             f"{'' if budget_hours is None else f', {budget_hours:g} run-hours'})"]
    path = sqlite_path(database_url(db))
    runs = []
    if path is None or path.is_file():
        try:
            with ResultStore(db, create=False) as store:
                runs = store.runs(status=FINISHED)
        except EmptyDatabase:
            pass
    decisions = decide(build_cells(runs), declared, mixed_model=False)
    step = plan_round(spec, decisions, declared.sequential.looks,
                      math.inf if budget_hours is None else budget_hours, max_seeds)
    lines.append("round 1, as the database stands:" if step.steps else "round 1: nothing to add as the database stands")
    lines += [f"  {s.claim}: to {len(s.seeds)} seeds, {len(s.runs)} runs, ~{s.hours:.2f} run-hours" for s in step.steps]
    lines += [f"  {claim}: {why}" for claim, why in step.skipped.items()]
    if step.decided:
        lines.append(f"  decided already: {', '.join(step.decided)}")
    return "\n".join(lines)


def _run_hours(db, keys: list[str], kind: str) -> float:
    from ttrlab.sweep.store import FINISHED, ResultStore

    wanted = set(keys)
    with ResultStore(db, create=False) as store:
        return sum((r["seconds"] or 0.0) for r in store.runs(status=FINISHED, kind=kind) if r["run_key"] in wanted) / 3600
