"""From stored runs to aggregates: one *cell* per setting (a run's identity without the seed),
summarised over its seeds, and every non-full method's cell compared with the full method's
cell at the same setting.

A cell's identity is the run key's (`RunSettings.run_key`), read from the run kind's own config
class: the resolved learning rate counts (the preset name does not), a method's settings count
only for runs of that method (FF ignores LoRA's rank), and what does not change a run (the data
folder, the device, fp32) is left out — so results from two machines meet in one cell. A run
whose kind is not registered here, or whose stored config its kind no longer reads, is grouped
by its stored config without the seed.

Comparisons (`method_vs_full`) are made for every run kind that trains (classification and
generative; theory computes at initialisation and is compared with training runs in the Theory
section instead): each non-full method's cell against the full method's (`Method.is_full`) cell
that agrees on everything but the method, the learning rate and the methods' own settings.

Besides its metrics (and those `ttrlab.report.derived` derives from them, seed by seed), a cell
keeps what its runs stored for finer analyses: the per-prompt 0/1 `outcomes` (generative runs:
the prompt-level paired test of Table 3) and the learning curve `train.curve`.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from ttrlab.attacks import ATTACKS
from ttrlab.core.errors import UserError
from ttrlab.evaluation import METRICS
from ttrlab.kinds.registry import RUN_KINDS
from ttrlab.methods import METHODS, method_settings
from ttrlab.report.derived import DERIVED
from ttrlab.report.stats import MIN_N, Comparison, Summary, compare, stable_seed, summarize
from ttrlab.sweep.store import StoredRun


# ---- run kinds ----------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def kind_config(kind: str):
    """The config class of a registered run kind, or None (a plugin kind without one, or a kind
    this installation does not know). Only the config is imported, never the experiment."""
    if kind not in RUN_KINDS:
        return None
    return getattr(RUN_KINDS.get(kind), "config_type", None)


def task_type(kind: str) -> str | None:
    """What the kind's models are adapted for ("classification", "generation"), or None."""
    config_type = kind_config(kind)
    return config_type.TASK_TYPE if config_type is not None else None


def kind_order(kind: str) -> tuple[int, str]:
    """Registered kinds in registration order (train, generative, theory), then the others."""
    from ttrlab.kinds.registry import RUN_KINDS

    order = RUN_KINDS.registered()
    return (order.index(kind) if kind in order else len(order), kind)


def trains(kind: str) -> bool:
    config_type = kind_config(kind)
    return config_type is not None and config_type.TRAINS


def is_clean(config: dict[str, Any]) -> bool:
    """Clean training: no attack, or any attack at rate 0 (nothing poisoned)."""
    from ttrlab.attacks import CLEAN

    attack = config.get("attack")
    return (attack in ATTACKS and ATTACKS.get(attack).family is CLEAN) or float(config.get("rate") or 0) == 0


def is_default_setting(kind: str, config: dict[str, Any]) -> bool:
    """Whether a run's method settings are its kind's defaults (e.g. LoRA r = 8, α = 16 for
    classification): the setting tables and figures show when a database holds several."""
    method = METHODS.get(config["method"]) if config.get("method") in METHODS else None
    defaults = resolved_defaults(kind, config.get("model"))
    if defaults is None or method is None or method.settings is None:
        return True
    return all(config.get(name) == defaults.get(name) for name in method.settings.field_names())


@lru_cache(maxsize=None)
def resolved_defaults(kind: str, model: Any) -> dict[str, Any] | None:
    """The kind's default config for this model, resolved as stored configs are (LoRA's
    `target_modules: auto` becomes the model's modules, e.g. query,value)."""
    defaults = _kind_defaults(kind)
    if defaults is None:
        return None
    try:
        return type(defaults)(**({"model": model} if isinstance(model, str) else {})).resolved()
    except (UserError, TypeError, ValueError, OSError):
        return defaults.resolved()


@lru_cache(maxsize=None)
def _kind_defaults(kind: str):
    config_type = kind_config(kind)
    return config_type() if config_type is not None else None


def config_value(kind: str, config: dict[str, Any], name: str) -> Any:
    """A config key's value; where the stored config lacks it, the kind's default — the value a
    run without that key was made with."""
    if name in config:
        return config[name]
    return getattr(_kind_defaults(kind), name, None)


def setting_text(kind: str, config: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """'train_size=2000, eval_size=500, max_steps=200' — the keys of `config` whose value is not
    the kind's default (what the runs were set to), in the config's order."""
    defaults = resolved_defaults(kind, config.get("model")) or {}
    return ", ".join(f"{k}={fmt(v)}" for k, v in config.items()
                     if k not in skip and k in defaults and defaults[k] != v and v is not None)


def method_label(config: dict[str, Any]) -> str:
    """The method with its settings, as the method describes itself ("FF", "LoRA r=8, α=16");
    a setting the stored config lacks counts as its default."""
    name = config.get("method")
    if name not in METHODS:
        return str(name)
    method = METHODS.get(name)
    defaults = dataclasses.asdict(method.settings()) if method.settings is not None else {}
    return method.describe({**defaults, **{k: v for k, v in config.items() if v is not None or k not in defaults}})


def chance(cell: "Cell") -> float:
    """1 / the number of labels of the cell's task (a task file read where its runs recorded it);
    2 labels where the task cannot be read here."""
    from ttrlab.data.tasks import get_task

    try:
        return 1.0 / get_task(cell.data.get("task_file") or cell.task).num_labels
    except (UserError, OSError, KeyError, TypeError, ValueError):
        return 0.5


def method_owned_keys() -> set[str]:
    """Every registered method's own setting names (LoRA's rank, alpha, ...)."""
    return {name for section in method_settings() for name in section.owned_names()}


# ---- cells --------------------------------------------------------------------------------------
def cell_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The identity of a stored run without its seed (see the module docstring)."""
    config_type = kind_config(kind)
    if config_type is not None:
        try:
            values = config_type.from_dict(config).identity_values()  # what the run key hashes
            values.pop("seed", None)
            return values
        except (UserError, TypeError, ValueError):
            pass  # a config this version cannot read: grouped as stored
    return {k: v for k, v in config.items() if k != "seed"}


def is_stale(run: StoredRun) -> bool:
    """Whether a stored run was made under another definition of one of its settings: its
    config's identity carries a revision marker (`*_revision`, e.g. an XNI run's `init_revision`,
    `methods.init`) and the key it was stored under is not the key that identity gives. Such a run is not the run its config now names; reports leave it
    out. Runs without a revised setting are never judged (a document that lacks a key keeps the key
    it was stored under)."""
    config_type = kind_config(run.kind)
    if config_type is None:
        return False
    try:
        config = config_type.from_dict(run.config)
        if not any(key.endswith("_revision") for key in config.identity_values()):
            return False
        return config.run_key() != run.run_key
    except (UserError, TypeError, ValueError):
        return False


def cell_id(kind: str, cell: dict[str, Any]) -> str:
    blob = json.dumps({"kind": kind, **cell}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class Cell:
    """One setting over its seeds: the identity of its runs without the seed (`config`), each
    metric's value per seed and their summaries, and what the runs stored for finer analyses."""

    kind: str
    id: str
    config: dict[str, Any]
    seeds: list[Any] = field(default_factory=list)
    values: dict[str, dict[Any, float]] = field(default_factory=lambda: defaultdict(dict))  # metric -> seed -> value
    summaries: dict[str, Summary] = field(default_factory=dict)
    outcomes: dict[Any, dict[str, list[int]]] = field(default_factory=dict)  # seed -> {"triggered": [0/1 per prompt], ...}
    curves: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)  # seed -> train.curve points
    trainable_parameters: int | None = None  # as the method recorded it (the same for every seed)
    total_parameters: int | None = None
    final_loss: dict[Any, float] = field(default_factory=dict)  # seed -> mean training loss of the last steps (the fit)
    seconds: dict[Any, float] = field(default_factory=dict)  # seed -> the run's recorded seconds
    devices: set[str] = field(default_factory=set)  # where its runs ran ("cpu", "cuda", ...)
    data: dict[str, Any] = field(default_factory=dict)  # the first run's `data` section (a task file's provenance)
    sweeps: set[str] = field(default_factory=set)  # the sweeps its runs belong to

    @property
    def method(self):
        name = self.config.get("method")
        return METHODS.get(name) if name in METHODS else None

    def method_label(self) -> str:
        return method_label(self.config)

    @property
    def task(self) -> Any:
        """The task as the run's identity names it (a task file by its name), or the kind's
        default where the stored config has no task (documents from before tasks existed)."""
        return config_value(self.kind, self.config, "task")

    @property
    def attack(self):
        """The registered attack the runs were made under, or None."""
        name = self.config.get("attack")
        return ATTACKS.get(name) if name in ATTACKS else None

    @property
    def rate(self) -> float:
        """The poisoning rate (0 where the config has none)."""
        return float(self.config.get("rate") or 0)

    @property
    def poisoned(self) -> bool:
        """Whether any training example was poisoned (an attack at a rate above 0)."""
        return not is_clean(self.config)


def build_cells(runs: Iterable[StoredRun]) -> list[Cell]:
    """Group finished runs into cells (one value per seed; a repeated seed keeps its first run);
    stale runs (`is_stale`) are left out."""
    cells: dict[str, Cell] = {}
    for run in runs:
        if is_stale(run):
            continue
        config = cell_config(run.kind, run.config)
        cid = cell_id(run.kind, config)
        cell = cells.setdefault(cid, Cell(run.kind, cid, config))
        cell.sweeps.update(run.sweeps)
        seed = run.seed
        if seed in cell.seeds:
            continue
        cell.seeds.append(seed)
        for metric, value in run.metrics.items():
            cell.values[metric][seed] = value
        if isinstance(run.seconds, (int, float)):
            cell.seconds[seed] = float(run.seconds)
        result = run.result
        if result is None:
            continue
        train = result.train or {}
        if result.sections.get("outcomes"):
            cell.outcomes[seed] = result.sections["outcomes"]
        if train.get("curve"):
            cell.curves[seed] = train["curve"]
        if isinstance(train.get("final_loss"), (int, float)):
            cell.final_loss[seed] = float(train["final_loss"])
        device = (result.runtime or {}).get("device")
        if device:
            cell.devices.add(str(device).split(":")[0])
        if not cell.data and isinstance(result.data, dict):
            cell.data = result.data
        method = result.method if isinstance(result.method, dict) else {}
        if cell.trainable_parameters is None and method.get("trainable_parameters") is not None:
            cell.trainable_parameters = method["trainable_parameters"]
            cell.total_parameters = method.get("total_parameters")
    for cell in cells.values():
        for derived in DERIVED:
            values = derived.values(cell.values)
            if values:
                cell.values[derived.info.name] = values
        for metric, by_seed in cell.values.items():
            cell.summaries[metric] = summarize(list(by_seed.values()))
    return sorted(cells.values(), key=_cell_order)


def _cell_order(cell: Cell) -> tuple:
    c = cell.config
    method = cell.method
    return (kind_order(cell.kind), str(c.get("task", "")), str(c.get("attack", "")), cell.rate,
            not (method is not None and method.is_full), str(c.get("method", "")), int(c.get("rank", 0) or 0),
            str(c.get("init", "")), float(c.get("init_scale") or 0), cell.id)


# ---- a method vs the full method ----------------------------------------------------------------
@dataclass
class ComparisonRow:
    cell: Cell  # the non-full method's
    full: Cell  # the full method's at the same setting
    metric: str
    result: Comparison

    def better(self) -> str:
        """Which side's mean is better by the metric's direction — an observation, not a test."""
        higher = METRICS.info(self.metric).higher_is_better
        r = self.result
        if higher is None or math.isnan(r.difference):
            return "–"
        if r.difference == 0:
            return "tie"
        method_ahead = (r.difference > 0) == higher
        return self.cell.method.label if method_ahead else self.full.method.label


def comparison_key(cell: Cell) -> str:
    """Everything but the method, its learning rate and the methods' own settings."""
    drop = {"method", "lr", *method_owned_keys()}
    return json.dumps({"kind": cell.kind, **{k: v for k, v in cell.config.items() if k not in drop}},
                      sort_keys=True, default=str)


def full_pairs(cells: list[Cell]) -> list[tuple[Cell, Cell]]:
    """(cell of a non-full method, full-method cell at the same setting) for the kinds that train."""
    full_by_key: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        if trains(cell.kind) and cell.method is not None and cell.method.is_full:
            full_by_key[comparison_key(cell)].append(cell)
    return [(cell, full) for cell in cells
            if trains(cell.kind) and cell.method is not None and not cell.method.is_full
            for full in full_by_key.get(comparison_key(cell), [])]


def method_vs_full(cells: list[Cell]) -> list[ComparisonRow]:
    """For each cell of a non-full method in a kind that trains, each full-method cell at the
    same setting: every metric both hold, paired by seed."""
    rows = []
    for cell, full in full_pairs(cells):
        for metric in sorted(set(cell.values) & set(full.values)):
            result = compare(cell.values[metric], full.values[metric], stable_seed(cell.id, full.id, metric))
            rows.append(ComparisonRow(cell, full, metric, result))
    return rows


# ---- tables -------------------------------------------------------------------------------------
STATISTICS = ("metric", "n", "mean", "std", "ci_low", "ci_high", "min", "max", "seeds")
# HTML and Markdown: the interval as text, "n too small" below MIN_N seeds
STATISTICS_DISPLAY = ("metric", "n", "mean", "std", "ci95", "min", "max", "seeds")
COMPARISON_COLUMNS = ("kind", "task", "attack", "rate", "method", "method_setting", "metric", "higher_is_better",
                      "n_method", "n_full", "mean_method", "mean_full", "difference", "n_pairs", "paired_difference",
                      "paired_sd", "ci_low", "ci_high", "p_sign_flip", "p_floor", "mdd", "welch_t", "welch_df",
                      "welch_p", "significant", "verdict", "better", "did_not_learn", "method_cell", "full_cell")


def varied_keys(cells: list[Cell]) -> list[str]:
    """The config keys whose value differs between the cells (a single cell: those not at its
    kind's default), in the order of the kinds' config fields, then any others by name."""
    order: list[str] = []
    for kind in sorted({c.kind for c in cells}, key=kind_order):
        config_type = kind_config(kind)
        order += [k for k in (config_type.field_names() if config_type is not None else ()) if k not in order]
    keys = {k for c in cells for k in c.config}
    order += sorted(keys - set(order))
    if len(cells) == 1:
        defaults = resolved_defaults(cells[0].kind, cells[0].config.get("model")) or {}
        return [k for k in order if k in cells[0].config and defaults.get(k, None) != cells[0].config[k]]
    values = {k: {json.dumps(c.config.get(k), sort_keys=True, default=str) for c in cells} for k in keys}
    return [k for k in order if k in keys and len(values[k]) > 1]


def aggregate_columns(cells: list[Cell]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(CSV columns, HTML/Markdown columns) of the aggregates: kind, cell, the settings the cells
    differ in (`varied_keys`), the statistics."""
    shown = ("kind", "cell", *varied_keys(cells))
    return (*shown, *STATISTICS), (*shown, *STATISTICS_DISPLAY)


def aggregate_rows(cells: list[Cell], columns: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per cell × metric; `columns`: the config keys to hold (default: every key)."""
    rows = []
    for cell in cells:
        for metric in sorted(cell.summaries):
            s = cell.summaries[metric]
            rows.append({
                "kind": cell.kind, "cell": cell.id, **{k: v for k, v in cell.config.items() if not columns or k in columns},
                "metric": metric, **s.as_dict(), "ci95": interval_text(s.n, s.ci_low, s.ci_high),
                "seeds": " ".join(map(str, sorted(cell.seeds, key=seed_order))),
            })
    return rows


def comparison_rows(comparisons: list[ComparisonRow], not_learned=lambda cell, full: None) -> list[dict[str, Any]]:
    """The comparisons as table rows; `not_learned(cell, full)`: why either arm did not learn the
    task, or None (`report.learned`)."""
    rows = []
    for row in comparisons:
        c, r = row.cell.config, row.result
        rows.append({
            "kind": row.cell.kind, "task": c.get("task"), "attack": c.get("attack"), "rate": c.get("rate"),
            "method": c.get("method"), "method_setting": row.cell.method_label(), "metric": row.metric,
            "higher_is_better": METRICS.info(row.metric).higher_is_better,
            "n_method": r.n_a, "n_full": r.n_b, "mean_method": r.mean_a, "mean_full": r.mean_b,
            "difference": r.difference, "n_pairs": r.n_pairs, "paired_difference": r.paired_difference,
            "paired_sd": r.paired_sd, "ci_low": r.ci_low, "ci_high": r.ci_high, "p_sign_flip": r.p_sign_flip,
            "p_floor": r.p_floor, "mdd": r.mdd, "welch_t": r.welch_t, "welch_df": r.welch_df, "welch_p": r.welch_p,
            "significant": r.significant, "verdict": r.verdict, "better": row.better(),
            "did_not_learn": not_learned(row.cell, row.full) or "", "method_cell": row.cell.id, "full_cell": row.full.id,
        })
    return rows


def seed_order(seed: Any) -> tuple:
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def interval_text(n: int, low: float, high: float) -> str:
    if n < MIN_N:
        return "n too small"
    return f"[{fmt(low)}, {fmt(high)}]"


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Rows as CSV; every text cell through `spreadsheet_text` (a task name may be a formula)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: spreadsheet_text(_csv_value(row.get(k))) for k in columns})
    return out.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# a signed number with an optional unit, as the tables write effects ("+2.93 pp", "-4.5%"): no
# formula can be made of these characters, so they stay readable
_SIGNED_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?( pp|%)?")


def spreadsheet_text(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string that starts like a formula (=, +, -, @,
    a tab or CR; `=HYPERLINK(...)` from a hostile task name) gets a leading apostrophe, the
    usual way to say "text" to Excel, LibreOffice and Sheets. Numbers, and strings that are
    signed numbers with a unit ("+2.93 pp"), are left as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START) or _SIGNED_NUMBER.fullmatch(value):
        return value
    return "'" + value


_HTML_START = re.compile(r"<(?=[A-Za-z/!?])|&(?=#?\w+;)")


def markdown_text(value: Any) -> str:
    """Text for a Markdown cell or heading that renders no HTML: a '<' that would open a tag
    (or a comment) and an '&' that would start an entity are escaped; '|' cannot end a table
    cell and a newline cannot end the line. Text without those ('p < 0.05') is unchanged."""
    text = _HTML_START.sub(lambda match: "&lt;" if match.group() == "<" else "&amp;", str(value))
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def to_markdown(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    def cell(value: Any) -> str:
        return markdown_text(fmt(value))

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(k)) for k in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for tables: NaN/None as '–', floats with `digits` significant decimals."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{value:.{digits}f}" else f"{value}"
    return str(value)


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value
