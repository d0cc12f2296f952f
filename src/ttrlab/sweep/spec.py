"""Sweep specs: a YAML file that names a base config and the axes to expand.

A spec is data a person can read and diff::

    name: fig1-upa
    kind: train                 # a run kind from ttrlab.kinds.registry.RUN_KINDS (default: train)
    figures: [1, 6]             # which of the paper's figures/tables these runs feed (informational)
    expected_wall_time: {cores: 2, minutes: 14, basis: "measured ..."}   # free-form, informational
    base: {task: sst2, model: minilm, max_steps: 300}
    seeds: [0, 1, 2]
    resources: {cpus: 1, gpus: 0}   # also threads, memory_gb (a worker's resident-memory cap)
    grids:                      # one or more blocks; each expands to a cartesian product
      - name: upa
        base: {attack: upa}     # merged over the top-level base
        axes: {method: [ff, lora], rate: [0.1, 0.2]}
        include: [{attack: none, rate: 0.0, method: [ff, lora]}]   # extra points (lists expand)
        exclude: [{method: ff, rate: 0.2}]                         # drop matching points

With a single block, `axes`/`include`/`exclude` may sit at the top level instead of `grids`.
Every point is completed with each seed and validated by the run kind (`config_from_dict`)
before anything runs, so an unknown key ("did you mean"), a wrong type or an empty axis is a
`UserError` up front. Points whose run keys coincide are one run: expanding full fine-tuning
over LoRA ranks gives one FF run per seed, not one per rank (the key of an FF run ignores the
LoRA knobs, see `RunConfig.run_key`).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ttrlab.core.errors import UserError, did_you_mean, shown

SPEC_KEYS = ("name", "description", "kind", "figures", "expected_wall_time", "base", "seeds", "resources",
             "grids", "axes", "include", "exclude")
GRID_KEYS = ("name", "base", "axes", "include", "exclude", "seeds")
RESOURCE_KEYS = ("cpus", "gpus", "threads", "memory_gb")
# What a spec may plan: points (grid points x seeds, before duplicates are dropped), counted
# before anything is expanded. The largest shipped spec plans 2,520 (specs/paper/theory_fig3.yaml).
MAX_POINTS = 20_000
MAX_DEPTH = 50  # nesting of YAML collections; a spec needs 4 or 5


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with a depth limit. An alias (`*name`) is a
    reference that a few hundred bytes can nest into billions of values (the "billion laughs"),
    and the first `str()` or `json.dumps` of it exhausts memory; a spec gains nothing from them."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"uses a YAML alias (*{event.anchor}, line {event.start_mark.line + 1}); aliases are not "
                           f"allowed in specs: write the values out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nests deeper than {MAX_DEPTH} levels (line {self.peek_event().start_mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    pass


@dataclass(frozen=True)
class Resources:
    """What one run needs: CPU cores and GPUs, and the torch threads a worker uses (default:
    cpus). Ray schedules on cpus and gpus. The local executor sizes its pool as cores // cpus,
    or, when gpus > 0, by the GPUs: a fraction shares one (0.5: two runs per GPU), a whole
    number above 1 gives each run that many (see `executors.gpu_slots`)."""

    cpus: float = 1.0
    gpus: float = 0.0
    threads: int | None = None
    memory_gb: float | None = None  # the most resident memory one worker may hold (local pool; Ray reserves it)

    @property
    def torch_threads(self) -> int:
        return self.threads if self.threads is not None else max(1, int(self.cpus))


@dataclass(frozen=True)
class PlannedRun:
    """One point of the sweep: a validated config of a run kind and its identity."""

    kind: str
    config: Any
    config_dict: dict[str, Any]
    run_key: str
    grid: str
    point: dict[str, Any] = field(default_factory=dict)  # the grid values that made this run

    def label(self) -> str:
        c = self.config_dict
        if not {"task", "method"} <= set(c):  # another kind: name the grid values
            values = " ".join(f"{k}={v}" for k, v in self.point.items())
            return f"{values} seed {c.get('seed', '')}".strip()
        parts = [str(c.get(k)) for k in ("task", "method", "attack") if k in c]
        if "rate" in c:
            parts.append(f"ρ={c['rate']:g}")
        from ttrlab.methods import METHODS

        if c.get("method") in METHODS:
            parts.append(METHODS.get(c["method"]).settings_label(c))
        # the grid's other values (e.g. align_steps=60), so points of one grid read apart; the
        # methods' own knobs are in their settings label already
        shown = {"task", "method", "attack", "rate", "seed"}
        shown.update(*(METHODS.get(m).settings.field_names() for m in METHODS if METHODS.get(m).settings))
        parts += [f"{k}={v}" for k, v in self.point.items() if k not in shown]
        if "seed" in c:
            parts.append(f"seed {c['seed']}")
        return " ".join(p for p in parts if p) or self.run_key[:10]


@dataclass
class SweepSpec:
    name: str
    kind: str
    base: dict[str, Any]
    seeds: list[int]
    grids: list[dict[str, Any]]
    resources: Resources = field(default_factory=Resources)
    description: str = ""
    figures: list[Any] = field(default_factory=list)
    expected_wall_time: Any = None
    source_text: str = ""  # the YAML as written (stored in the database beside the sweep)
    source_path: str | None = None
    _expansion: Expansion | None = field(default=None, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        blob = json.dumps(
            {"name": self.name, "kind": self.kind, "base": self.base, "seeds": self.seeds, "grids": self.grids},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def expand(self) -> Expansion:
        """The planned runs (validated once, then cached)."""
        if self._expansion is None:
            self._expansion = expand(self)
        return self._expansion


@dataclass
class Expansion:
    runs: list[PlannedRun]
    points: int  # points before removing duplicates (seeds included)
    duplicates: int  # points whose run key another point already had

    def __len__(self) -> int:
        return len(self.runs)


# ---- loading -------------------------------------------------------------------------------
def load_spec(source: str | Path | Mapping[str, Any], base: Mapping[str, Any] | None = None) -> SweepSpec:
    """A spec from a YAML path or an already parsed mapping; raises UserError on bad input.
    `base` sets values in the spec's base (e.g. the device and precision of every run); they
    count in the spec's hash, so the database keeps such a sweep apart from the spec as written."""
    text, path = "", None
    if isinstance(source, Mapping):
        data = dict(source)
        _check_depth(data, "sweep spec")
        try:
            text = yaml.safe_dump(data, sort_keys=False)
        except yaml.YAMLError as error:  # a Python object a caller put in
            raise UserError(f"sweep spec holds a value YAML cannot write: {str(error).splitlines()[0]}") from None
    else:
        from ttrlab.core.io import path_errors, read_text, user_path

        path = user_path(source, "sweep spec")
        with path_errors("sweep spec", path):
            if not path.is_file():
                raise UserError(f"sweep spec {str(path)!r} is not a file" if os.path.lexists(path)
                                else f"sweep spec {str(path)!r} does not exist")
        text = read_text(path, "sweep spec")
        data = parse_yaml(text, f"sweep spec {str(path)!r}")
        if not isinstance(data, dict):
            raise UserError(f"sweep spec {str(path)!r} must be a YAML mapping, got {type(data).__name__}")
        from ttrlab.data.tasks import anchor_task_paths

        data = anchor_task_paths(data, path.parent)  # `task: file.yaml` is relative to the spec file
    where = str(path) if path else "sweep spec"
    spec = _parse(data, where)
    if base:  # set for every run: in the top-level base and wherever a grid sets the same key
        spec.base.update(base)
        for grid in spec.grids:
            grid["base"].update({k: v for k, v in base.items() if k in grid["base"]})
    spec.source_text = text
    spec.source_path = str(path) if path else None
    spec.expand()  # validate every point now, before anything runs
    return spec


def parse_yaml(text: str, where: str) -> Any:
    """The YAML document `text` with the spec loader (no aliases, bounded depth, safe tags only)."""
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as refused:
        raise UserError(f"{where} {refused}") from None
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else "invalid YAML"
        raise UserError(f"{where} is not valid YAML: {first}") from None


def _check_depth(data: Any, where: str) -> None:
    """A mapping handed in directly nests at most MAX_DEPTH levels (as a file must)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UserError(f"{where} nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def _parse(data: dict[str, Any], where: str) -> SweepSpec:
    _check_keys(data, SPEC_KEYS, where)
    name = data.get("name") or (Path(where).stem if where != "sweep spec" else "sweep")
    _require(isinstance(name, str), f"{where}: 'name' must be a string, got {shown(name)}")
    from ttrlab.sweep.store import Sweep, check_stored_text

    check_stored_text(name, Sweep.__table__.c.name, f"{where}: sweep name")  # before any database is made
    kind = data.get("kind", "train")
    from ttrlab.kinds.registry import RUN_KINDS

    if kind not in RUN_KINDS:
        RUN_KINDS.get(kind)  # raises the "unknown run kind ... did you mean" UserError
    from ttrlab.sweep.store import Run

    check_stored_text(kind, Run.__table__.c.kind, f"{where}: run kind")
    description = data.get("description", "")
    _require(description is None or isinstance(description, str),
             f"{where}: 'description' must be text, got {shown(description)}")
    base = _no_seed(_mapping(data.get("base", {}), f"{where}: 'base'"), f"{where}: 'base'")
    seeds = _seeds(data.get("seeds", [0]), f"{where}: 'seeds'")
    resources = _resources(data.get("resources", {}), f"{where}: 'resources'")
    figures = data.get("figures", [])
    _require(isinstance(figures, list), f"{where}: 'figures' must be a list, got {shown(figures)}")

    top_level_grid = {k: data[k] for k in ("axes", "include", "exclude") if k in data}
    if "grids" in data:
        _require(not top_level_grid, f"{where}: give 'axes'/'include'/'exclude' inside 'grids' or at the top level, not both")
        grids_raw = data["grids"]
        _require(isinstance(grids_raw, list) and grids_raw, f"{where}: 'grids' must be a non-empty list of mappings")
    else:
        grids_raw = [top_level_grid]
    grids = []
    for i, raw in enumerate(grids_raw):
        grid = _mapping(raw, f"{where}: grids[{i}]" if "grids" in data else where)
        gname = grid.get("name", f"grid{i}" if "grids" in data else "main")
        label = f"{where}: grid {gname!r}" if "grids" in data else where
        _check_keys(grid, GRID_KEYS, label)
        axes = _mapping(grid.get("axes", {}), f"{label}: 'axes'")
        for axis, values in axes.items():
            _require(axis != "seed", f"{label}: 'seed' is not an axis; list seeds under 'seeds'")
            _require(isinstance(values, list), f"{label}: axis {shown(axis)} must be a list of values, got {shown(values)}")
            _require(len(values) > 0, f"{label}: axis {shown(axis)} is empty; give at least one value")
        include = [_no_seed(rule, f"{label}: 'include'") for rule in _rules(grid.get("include", []), f"{label}: 'include'")]
        exclude = [_no_seed(rule, f"{label}: 'exclude'") for rule in _rules(grid.get("exclude", []), f"{label}: 'exclude'")]
        _require(axes or include, f"{label}: nothing to run; give 'axes' or 'include'")
        grids.append({
            "name": str(gname),
            "base": _no_seed(_mapping(grid.get("base", {}), f"{label}: 'base'"), f"{label}: 'base'"),
            "axes": axes,
            "include": include,
            "exclude": exclude,
            "seeds": _seeds(grid["seeds"], f"{label}: 'seeds'") if "seeds" in grid else None,
        })
    return SweepSpec(
        name=name, kind=kind, base=base, seeds=seeds, grids=grids, resources=resources,
        description=description or "", figures=figures,
        expected_wall_time=data.get("expected_wall_time"),
    )


# ---- expansion -----------------------------------------------------------------------------
def expand(spec: SweepSpec) -> Expansion:
    """Every (grid point × seed) as a validated PlannedRun, duplicates (same run key) dropped."""
    from ttrlab.kinds.registry import RUN_KINDS
    from ttrlab.sweep.store import RUN_KEY_LENGTH

    kind = RUN_KINDS.get(spec.kind)
    planned = sum(_point_count(grid) * len(grid["seeds"] or spec.seeds) for grid in spec.grids)
    _require(planned <= MAX_POINTS,
             f"sweep {spec.name!r}: its grids expand to {planned:,} points (seeds included), more than the "
             f"{MAX_POINTS:,} a spec may plan; split it into smaller specs")
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    points = 0
    for grid in spec.grids:
        label = f"sweep {spec.name!r}, grid {grid['name']!r}"
        for axis in grid["axes"]:
            _require(axis not in grid["base"], f"{label}: {axis!r} is both in 'base' and an axis")
        fixed = {**spec.base, **grid["base"]}
        for rule in grid["exclude"]:
            _check_exclude(rule, grid["axes"], fixed, label)
        for point in _grid_points(grid, fixed):
            for seed in grid["seeds"] or spec.seeds:
                values = {**spec.base, **grid["base"], **point, "seed": seed}
                try:
                    config = kind.config_from_dict(values)
                except UserError as error:
                    raise UserError(f"{label}: {error}") from None
                key = kind.run_key(config)
                _require(isinstance(key, str) and 0 < len(key) <= RUN_KEY_LENGTH,
                         f"{label}: run kind {spec.kind!r} gave the run key {shown(key)}; a run key is text of 1 to "
                         f"{RUN_KEY_LENGTH} characters")
                points += 1
                if key in seen:
                    continue
                seen.add(key)
                config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(values)
                runs.append(PlannedRun(spec.kind, config, config_dict, key, grid["name"], dict(point)))
    _require(runs, f"sweep {spec.name!r} plans no runs: its exclude rules remove every point of every grid; "
                   "nothing was run or created")
    return Expansion(runs=runs, points=points, duplicates=points - len(runs))


def _point_count(grid: dict[str, Any]) -> int:
    """How many points `_grid_points` would make before excluding any: counted, not expanded."""
    product = math.prod(len(values) for values in grid["axes"].values()) if grid["axes"] else 0
    included = sum(math.prod(len(v) if isinstance(v, list) else 1 for v in rule.values()) for rule in grid["include"])
    return product + included


def _grid_points(grid: dict[str, Any], fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """The product of the axes minus excluded points (matched on base + point), then the
    include rules' points (never excluded)."""
    axes = grid["axes"]
    product = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] if axes else []
    kept = [p for p in product if not any(_matches({**fixed, **p}, rule) for rule in grid["exclude"])]
    for rule in grid["include"]:
        kept.extend(_expand_rule(rule))
    return kept


def _expand_rule(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """An include rule: list values expand as a product, scalars are fixed."""
    keys = list(rule)
    options = [v if isinstance(v, list) else [v] for v in rule.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*options)]


def _check_exclude(rule: dict[str, Any], axes: dict[str, list], fixed: dict[str, Any], label: str) -> None:
    """An exclude rule names axes or base keys, and only values they take (a typo or a quoted
    number would otherwise exclude nothing, silently)."""
    for key, wanted in rule.items():
        _require(key in axes or key in fixed,
                 f"{label}: exclude rule names {key!r}, which is neither an axis nor a base key"
                 f"{did_you_mean(str(key), [*axes, *fixed])}")
        taken = axes[key] if key in axes else [fixed[key]]
        for value in wanted if isinstance(wanted, list) else [wanted]:
            _require(any(_same(value, t) for t in taken),
                     f"{label}: exclude rule {shown(rule)}: {key} {shown(value)} is not a value the grid takes "
                     f"(allowed: {', '.join(shown(t, 30) for t in taken)})")


def _same(a: Any, b: Any) -> bool:
    """Equal as a point value (True is not 1, "0.1" is not 0.1)."""
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _matches(point: dict[str, Any], rule: dict[str, Any]) -> bool:
    """An exclude rule matches when every key it names has (one of) the given value(s)."""
    for key, wanted in rule.items():
        if key not in point:
            return False
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if point[key] not in allowed:
            return False
    return True


# ---- small validators ----------------------------------------------------------------------
def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed)}; allowed: {', '.join(allowed)}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    _require(isinstance(value, dict), f"{where} must be a mapping, got {shown(value)}")
    return dict(value)


def _rules(value: Any, where: str) -> list[dict[str, Any]]:
    _require(isinstance(value, list), f"{where} must be a list of mappings, got {shown(value)}")
    rules = []
    for rule in value:
        _require(isinstance(rule, dict) and rule, f"{where}: each rule must be a non-empty mapping, got {shown(rule)}")
        for key, v in rule.items():
            _require(not (isinstance(v, list) and not v), f"{where}: {shown(key)} has an empty list")
        rules.append(dict(rule))
    return rules


def _no_seed(values: dict[str, Any], where: str) -> dict[str, Any]:
    """A base or a rule may not set `seed`: the seeds of a sweep are its `seeds` list (a `seed`
    here would be overridden by them, silently)."""
    _require("seed" not in values, f"{where} sets seed {shown(values.get('seed'))}, which conflicts with the spec's "
                                   "seeds; list the seeds under 'seeds' (e.g. seeds: [7])")
    return values


def _seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    _require(isinstance(value, list) and value, f"{where} must be a non-empty list of integers, got {shown(value)}")
    from ttrlab.core.settings import MAX_SEED

    for seed in value:
        _require(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED,
                 f"{where}: seed {shown(seed)} must be an integer >= 0 and <= {MAX_SEED}")
    _require(len(set(value)) == len(value), f"{where}: seeds {shown(value)} repeat a value")
    return list(value)


def _resources(value: Any, where: str) -> Resources:
    data = _mapping(value, where)
    _check_keys(data, RESOURCE_KEYS, where)
    for key, v in data.items():
        _require(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                 f"{where}: {key!r} must be a number >= 0, got {shown(v)}")
        _require(math.isfinite(v), f"{where}: {key!r} must be a finite number, got {shown(v)}")
    _require(data.get("cpus", 1) > 0, f"{where}: 'cpus' must be > 0")
    gpus = data.get("gpus", 0)
    _require(gpus <= 1 or float(gpus).is_integer(),
             f"{where}: 'gpus' {shown(gpus)} must be a fraction of one GPU (0.5, 0.25) or a whole number of GPUs")
    threads = data.get("threads")
    if threads is not None:
        _require(float(threads).is_integer() and threads >= 1, f"{where}: 'threads' must be an integer >= 1")
        threads = int(threads)
    memory_gb = data.get("memory_gb")
    if memory_gb is not None:
        _require(memory_gb > 0, f"{where}: 'memory_gb' must be a number > 0, got {memory_gb!r}")  # finite: checked above
        memory_gb = float(memory_gb)
    return Resources(cpus=float(data.get("cpus", 1)), gpus=float(data.get("gpus", 0)), threads=threads,
                     memory_gb=memory_gb)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)
