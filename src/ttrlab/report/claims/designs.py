"""How a claim's evidence is collected: one registered design per kind of claim, each turning the
cells a claim selects into *rows* — (unit, setting or block, value) — that `decide` averages into
one value per independent unit and tests across units.

- **contrast**: treatment − baseline at the same setting and seed (the baseline: the full method,
  the same cell trained clean, or the cell equal but for a few keys); with `lift`, each arm is
  first measured against its own clean run.
- **trend**: Spearman's ρ of the metric (or of treatment − baseline) against the claim's axis
  within each block — one setting of one unit, the learning rate following the axis where a
  preset ties it to the rank — so the unit's value is its mean ρ over its blocks.
- **change**: the least-squares change of the metric across the axis range within each block
  (on log(axis) with `scale: log`), for claims that the axis changes nothing.
- **describe**: a computed, near-deterministic quantity (Fig. 3's H′, Theorem 3.4's spectrum):
  the shape of its seed-mean along the axis at each value of the other, with the seed spread as
  tolerance, inside and outside the region where the theorem's assumptions hold. No p-value.
- **all_of**: an intersection-union claim over other claims (decided in `decide`).

Settings left out by a manipulation check are named in `Evidence.excluded`; every cell a claim's
evidence reads (clean runs and check runs included) is in `Evidence.cells`, so its cost per seed
can be priced.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import stats as sps

from ttrlab.core.registry import Registry
from ttrlab.report.aggregate import Cell, comparison_key, config_value, fmt, method_owned_keys
from ttrlab.report.claims.cells import CellIndex
from ttrlab.report.claims.checks import CHECKS, backdoor_lift
from ttrlab.report.claims.declared import Claim, ClaimsFile

UNDEFENDED = {"defense": "none"}  # the paper's claims are about undefended training (where a run has the key)
TREND_SKIP = ("seed", "lr")  # never part of a block's identity: the seed is the unit's, the lr follows the axis


@dataclass
class Evidence:
    statistic: str  # how a unit's value reads: "LoRA − FF", "ρ(rank)", ...
    rows: list[tuple[tuple, str, float]] = field(default_factory=list)  # (unit, setting/block, value)
    arms: list[tuple[tuple, float, float]] = field(default_factory=list)  # (unit, treatment, baseline) per pair and seed
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (why, setting)
    cells: set[str] = field(default_factory=set)  # every cell the evidence reads
    notes: list[str] = field(default_factory=list)
    why: str = ""  # why nothing could be collected
    description: str = ""  # describe: the shape
    holds: bool | None = None  # describe: the claim holds inside its region
    # generative contrasts: McNemar's discordant prompts summed over the pairs and seeds — (only the
    # baseline's answer hit, only the treatment's): a description within runs, not the claim's test
    discordant: tuple[int, int] | None = None

    def units(self, seeds: set | None = None) -> dict[tuple, float]:
        """One value per unit: the mean of its rows (only units whose seed is in `seeds`)."""
        grouped: dict[tuple, list[float]] = defaultdict(list)
        for unit, _, value in self.rows:
            if seeds is None or unit[-1] in seeds:
                grouped[unit].append(value)
        return {unit: float(np.mean(values)) for unit, values in grouped.items()}

    def seeds(self) -> list:
        return sorted({unit[-1] for unit, _, _ in self.rows}, key=_seed_order)

    def excluded_text(self) -> str:
        grouped: dict[str, list[str]] = {}
        for why, setting in self.excluded:
            grouped.setdefault(why, [])
            if setting not in grouped[why]:
                grouped[why].append(setting)
        return "; ".join(f"{why}: {', '.join(settings)}" for why, settings in grouped.items())


@dataclass
class Context:
    index: CellIndex
    declared: ClaimsFile
    exclusions: bool  # apply the manipulation checks (False: the sensitivity analysis)
    _full: dict[str, list[Cell]] | None = None

    def failed_check(self, claim: Claim, arms: list[Cell], only: tuple[str, ...] | None = None) -> str | None:
        if not self.exclusions:
            return None
        for name in claim.checks:
            if only is not None and name not in only:
                continue
            why = CHECKS.get(name).judge(arms, self.index, self.declared.checks[name])
            if why:
                return why
        return None

    def full_partners(self, cell: Cell) -> list[Cell]:
        """Full-method cells at the same setting (everything but the method, its lr and the
        methods' own settings)."""
        if self._full is None:
            self._full = defaultdict(list)
            for other in self.index.cells:
                if other.method is not None and other.method.is_full:
                    self._full[comparison_key(other)].append(other)
        return self._full.get(comparison_key(cell), [])


@dataclass(frozen=True)
class Design:
    name: str
    collect: Callable[[Claim, Context], Evidence]


DESIGNS: Registry[Design] = Registry("claim design")


# ---- selecting cells ------------------------------------------------------------------------------
def claim_value(cell: Cell, key: str) -> Any:
    """A cell's value of `key` (a stored config without it: the kind's default); an init scale
    left unset is the strategy's own k where it has one (Kaiming: 1/3)."""
    value = config_value(cell.kind, cell.config, key)
    if key == "init_scale" and value is None and cell.method is not None and cell.method.settings is not None \
            and "init" in cell.method.settings.field_names():
        from ttrlab.methods import INIT_STRATEGIES

        init = cell.config.get("init", cell.method.settings().init)
        if init in INIT_STRATEGIES:
            return INIT_STRATEGIES.get(init).default_k
    return value


def matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        if value is None:
            return False
        if "above" in wanted and not float(value) > float(wanted["above"]):
            return False
        return not ("below" in wanted and not float(value) < float(wanted["below"]))
    if isinstance(wanted, list):
        return any(matches(value, w) for w in wanted)
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool) and value is not None:
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    return value == wanted


def selects(claim: Claim, cell: Cell) -> bool:
    """The claim's treatment cells: its kind and `where`, undefended, and the method's own
    settings at their defaults except those `where` or the axis vary."""
    if cell.kind != claim.kind:
        return False
    where = {**UNDEFENDED, **claim.where}
    if not all(matches(claim_value(cell, k), w) for k, w in where.items() if k in claim.where or k in cell.config):
        return False
    return _default_settings_except(cell, {*claim.where, *(k for k in (claim.axis, claim.across) if k)})


def _default_settings_except(cell: Cell, varied: set[str]) -> bool:
    from ttrlab.report.aggregate import resolved_defaults

    method = cell.method
    if method is None or method.settings is None:
        return True
    defaults = resolved_defaults(cell.kind, cell.config.get("model"))
    if defaults is None:
        return True
    return all(cell.config.get(name) == defaults.get(name) for name in method.settings.field_names() if name not in varied)


def unit_of(declared: ClaimsFile, cell: Cell, seed: Any) -> tuple:
    """The independent unit a cell's seed belongs to: (task, seed) by default."""
    return (*(claim_value(cell, k) for k in declared.unit if k != "seed"), seed)


def measured(cell: Cell, claim: Claim, index: CellIndex) -> dict:
    """{seed: value} of the claim's metric; with `lift`, minus the same arm's clean run at the
    same seed (the ASR lift of a backdoor)."""
    if not claim.lift:
        return dict(cell.values.get(claim.metric, {}))
    if claim.metric == "asr":
        return backdoor_lift(cell, index)
    clean = index.clean_counterpart(cell)
    if clean is None or claim.metric not in cell.values or claim.metric not in clean.values:
        return {}
    base = clean.values[claim.metric]
    return {s: v - base[s] for s, v in cell.values[claim.metric].items() if s in base}


def _used(evidence: Evidence, index: CellIndex, *cells: Cell) -> None:
    """Record the cells read, with their clean runs (what a lift or a check reads)."""
    for cell in cells:
        evidence.cells.add(cell.id)
        for partner in (index.clean_counterpart(cell), index.clean_trained(cell)):
            if partner is not None:
                evidence.cells.add(partner.id)


def setting_label(cell: Cell, *extra: str) -> str:
    """'sst2 bpa 0.05' — what a claim's settings differ in (and `extra` keys, e.g. the init)."""
    keys = ("task", "attack", "rate", *extra)
    return " ".join(fmt(cell.config[k]) if isinstance(cell.config[k], float) else str(cell.config[k])
                    for k in keys if cell.config.get(k) is not None)


# ---- baselines ------------------------------------------------------------------------------------
def baseline_of(claim: Claim, cell: Cell, context: Context) -> list[Cell]:
    """The cells a treatment cell is compared with."""
    if claim.baseline == "full":
        return context.full_partners(cell)
    if claim.baseline == "clean":
        clean = context.index.clean_counterpart(cell)
        return [clean] if clean is not None else []
    if isinstance(claim.baseline, dict):
        keys = tuple(sorted(claim.baseline))
        return [other for other in context.index.equal_but(cell, keys)
                if all(matches(claim_value(other, k), v) for k, v in claim.baseline.items())]
    return []


def _statistic(claim: Claim) -> str:
    if claim.baseline == "full":
        return "LoRA − FF" if claim.where.get("method") == "lora" else "method − full"
    if claim.baseline == "clean":
        return "poisoned − clean"
    if isinstance(claim.baseline, dict):
        return " − ".join(("treatment", ", ".join(f"{k} {v}" for k, v in claim.baseline.items())))
    return claim.metric


# ---- contrast -------------------------------------------------------------------------------------
def contrast(claim: Claim, context: Context) -> Evidence:
    evidence = Evidence(_statistic(claim))
    index = context.index
    for cell in index.cells:
        if not selects(claim, cell):
            continue
        for base in baseline_of(claim, cell, context):
            setting = setting_label(cell, *(claim.baseline or {}))
            arms = [cell] if claim.baseline == "clean" else [cell, base]
            why = context.failed_check(claim, arms)
            if why:
                evidence.excluded.append((why, setting))
                continue
            ours, theirs = measured(cell, claim, index), measured(base, claim, index)
            seeds = [s for s in ours if s in theirs]
            if not seeds:
                continue
            _used(evidence, index, cell, base)
            for seed in seeds:
                unit = unit_of(context.declared, cell, seed)
                evidence.rows.append((unit, setting, ours[seed] - theirs[seed]))
                evidence.arms.append((unit, ours[seed], theirs[seed]))
            if cell.outcomes and base.outcomes:
                from ttrlab.report.paired import prompt_pairs

                test = prompt_pairs(cell, base)[2]
                b, c = evidence.discordant or (0, 0)
                evidence.discordant = (b + test.b, c + test.c)
    if not evidence.rows:
        evidence.why = evidence.excluded_text() or "the database holds no runs of this setting"
    return evidence


# ---- trend and change -----------------------------------------------------------------------------
def _blocks(claim: Claim, context: Context, evidence: Evidence) -> dict[tuple, list[tuple[float, float]]]:
    """{(unit, block): [(axis value, value)]}: the claim's cells (or their difference from the
    baseline) per block of one setting and unit; an axis point whose method did not learn, or a
    setting whose backdoor did not implant, is left out and named."""
    index = context.index
    by_setting: dict[str, list[tuple[Cell, Cell | None]]] = defaultdict(list)
    for cell in index.cells:
        if not selects(claim, cell) or claim_value(cell, claim.axis) is None:
            continue
        partners = baseline_of(claim, cell, context) if claim.baseline else [None]
        rest = json.dumps({k: v for k, v in sorted(cell.config.items())
                           if k not in (claim.axis, *TREND_SKIP) and k not in method_owned_keys() - set(claim.where)},
                          default=str)
        by_setting[rest] += [(cell, base) for base in partners]
    blocks: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for points in by_setting.values():
        if len({claim_value(cell, claim.axis) for cell, _ in points}) < 2:
            continue  # one axis value: no block of this claim, only cells it shares a setting with
        first = points[0][0]
        label = setting_label(first, *(k for k in claim.where if k in ("init",)))
        arms = [c for pair in points for c in pair if c is not None]
        why = context.failed_check(claim, arms, only=("implanted",))
        if why:
            evidence.excluded.append((why, label))
            continue
        for cell, base in points:
            x = float(claim_value(cell, claim.axis))
            pair = [cell] if base is None else [cell, base]
            why = context.failed_check(claim, pair, only=("learned",))
            if why:
                evidence.excluded.append((why, f"{label} ({claim.axis} {fmt(x)})"))
                continue
            ours = measured(cell, claim, index)
            theirs = measured(base, claim, index) if base is not None else None
            _used(evidence, index, *pair)
            for seed, value in ours.items():
                if theirs is not None:
                    if seed not in theirs:
                        continue
                    value -= theirs[seed]
                unit = unit_of(context.declared, cell, seed)
                blocks[(unit, label)].append((x, value))
    return blocks


def trend(claim: Claim, context: Context) -> Evidence:
    statistic = f"ρ({claim.axis})" + (f" of {_statistic(claim)}" if claim.baseline else "")
    evidence = Evidence(statistic)
    blocks = _blocks(claim, context, evidence)
    for (unit, label), points in blocks.items():
        xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
        if len(set(xs)) < 3 or np.ptp(ys) == 0:
            evidence.notes.append(f"{label} seed {unit[-1]}: fewer than 3 {claim.axis} values or a constant metric")
            continue
        evidence.rows.append((unit, label, float(sps.spearmanr(xs, ys)[0])))
    if not evidence.rows:
        evidence.why = evidence.excluded_text() or ("the database holds no runs of this setting" if not blocks else
                                                   f"no block holds 3 or more {claim.axis} values with a varying {claim.metric}")
    return evidence


def change(claim: Claim, context: Context) -> Evidence:
    evidence = Evidence(f"change across {claim.axis}")
    blocks = _blocks(claim, context, evidence)
    for (unit, label), points in blocks.items():
        xs = np.array([p[0] for p in points])
        if claim.scale == "log":
            xs = np.log(xs)
        ys = np.array([p[1] for p in points])
        if len(set(xs)) < 2:
            evidence.notes.append(f"{label} seed {unit[-1]}: fewer than 2 {claim.axis} values")
            continue
        slope = float(np.polyfit(xs, ys, 1)[0])
        evidence.rows.append((unit, label, slope * float(xs.max() - xs.min())))
    if not evidence.rows:
        evidence.why = evidence.excluded_text() or "the database holds no runs of this setting"
    return evidence


# ---- describe -------------------------------------------------------------------------------------
def describe(claim: Claim, context: Context) -> Evidence:
    """The shape of a computed quantity along the axis at each value of `across`."""
    evidence = Evidence(f"shape along {claim.axis}")
    curves: dict[float, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for cell in context.index.cells:
        if not selects(claim, cell) or claim.metric not in cell.values:
            continue
        x, a = claim_value(cell, claim.axis), claim_value(cell, claim.across)
        if x is None or a is None:
            continue
        evidence.cells.add(cell.id)
        curves[float(a)][float(x)] += list(cell.values[claim.metric].values())
    if not curves:
        evidence.why = "the database holds no runs of this setting"
        return evidence
    seeds = {s for cid in evidence.cells for s in context.index.by_id[cid].seeds}
    inside = [_region_holds(claim, {claim.across: a}) for a in sorted(curves)]
    shapes = {a: _shape(curves[a], claim) for a in sorted(curves)}
    indicator = all(v in (0.0, 1.0) for curve in curves.values() for values in curve.values() for v in values)
    evidence.description, evidence.holds = (_describe_indicator if indicator else _describe_shapes)(claim, curves, shapes, inside)
    evidence.notes.append(f"{len(seeds)} seeds; the seed spread is the tolerance of every step")
    return evidence


def _region_holds(claim: Claim, values: dict[str, Any]) -> bool:
    return all(matches(values[k], w) for k, w in claim.region.items() if k in values)


def _shape(curve: dict[float, list[float]], claim: Claim) -> dict[str, Any]:
    """Inside the region along the axis (and over the whole axis): rises, falls, flat, peaks at
    x*, dips at x*, or non-monotone, a step counting only where it exceeds the seed spread at
    either end."""
    xs = sorted(curve)
    out = {}
    for part, chosen in (("inside", [x for x in xs if _region_holds(claim, {claim.axis: x})]), ("all", xs)):
        means = [float(np.mean(curve[x])) for x in chosen]
        spreads = [float(np.ptp(curve[x])) for x in chosen]
        steps = []
        for i in range(len(chosen) - 1):
            d, tolerance = means[i + 1] - means[i], max(spreads[i], spreads[i + 1])
            steps.append(0 if abs(d) <= tolerance else (1 if d > 0 else -1))
        moves = [s for s in steps if s]
        peak = chosen[int(np.argmax(means))] if means else None
        dip = chosen[int(np.argmin(means))] if means else None
        if len(chosen) < 2:
            shape = "one point"
        elif not moves:
            shape = "flat within the seed spread"
        elif all(s > 0 for s in moves):
            shape = "rises"
        elif all(s < 0 for s in moves):
            shape = "falls"
        elif moves == sorted(moves, reverse=True):
            shape = f"peaks at {claim.axis} {fmt(peak)}"
        elif moves == sorted(moves):
            shape = f"dips at {claim.axis} {fmt(dip)}"
        else:
            shape = "non-monotone"
        out[part] = shape
    return out


def _describe_shapes(claim: Claim, curves, shapes, inside) -> tuple[str, bool | None]:
    wanted = "rises" if claim.expect == "higher" else "falls"
    region = ", ".join(f"{k} {_bound(w)}" for k, w in claim.region.items()) or "everywhere"
    groups: dict[tuple[bool, str], list[float]] = defaultdict(list)
    for a, is_inside in zip(sorted(curves), inside):
        groups[(is_inside, shapes[a]["inside"] if is_inside else shapes[a]["all"])].append(a)
    parts = []
    for is_inside in (True, False):
        described = [f"{shape} at {claim.across} {', '.join(fmt(a) for a in values)}"
                     for (where, shape), values in groups.items() if where == is_inside]
        if described:
            parts.append(f"{'inside the assumptions' if is_inside else 'outside them'} ({region if is_inside else 'not ' + region}): "
                         + "; ".join(described))
    whole = sorted({shapes[a]["all"] for a in curves})
    if claim.region and any(k == claim.axis for k in claim.region):
        parts.append(f"over the whole {claim.axis} range: {'; '.join(whole)}")
    held = [shapes[a]["inside"] == wanted for a, is_inside in zip(sorted(curves), inside) if is_inside]
    return " — ".join(parts), (all(held) if held else None)


def _describe_indicator(claim: Claim, curves, shapes, inside) -> tuple[str, bool | None]:
    region = ", ".join(f"{k} {_bound(w)}" for k, w in claim.region.items()) or "everywhere"
    failing, held = [], []
    for a, is_inside in zip(sorted(curves), inside):
        if not is_inside:
            continue
        points = {x: float(np.mean(v)) for x, v in curves[a].items() if _region_holds(claim, {claim.axis: x})}
        bad = sorted(x for x, v in points.items() if v < 1.0)
        held.append(not bad)
        if bad:
            failing.append(f"{claim.across} {fmt(a)} from {claim.axis} {fmt(bad[0])}")
    text = (f"inside the assumptions ({region}): " +
            ("holds at every point" if not failing else f"fails at {'; '.join(failing)} (holds below)"))
    return text, (all(held) if held else None)


def _bound(wanted: Any) -> str:
    if isinstance(wanted, dict):
        return " and ".join(f"{'<' if k == 'below' else '>'} {fmt(float(v))}" for k, v in wanted.items())
    return f"= {wanted}"


def all_of(claim: Claim, context: Context) -> Evidence:
    return Evidence("every component")  # decided from its components in `decide`


for _design in (Design("contrast", contrast), Design("trend", trend), Design("change", change),
                Design("describe", describe), Design("all_of", all_of)):
    DESIGNS.register(_design.name)(_design)


def _seed_order(seed: Any) -> tuple:
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))
