"""The file formats `ttrlab import` reads: each turns a file of someone else's per-seed results
into `ExternalRun`s — a config in ttrlab's keys, one seed, metrics in ttrlab's names.

- `csv`: the documented layout (docs/import.md) — one row per run; columns whose name holds a dot
  are metrics (`clean.accuracy`, `backdoor.asr`), the others are the run's config (`task`,
  `method`, `attack`, `rate`, `seed` required; anything else, e.g. `model`, `lr`, `rank`, kept).
- `paper-vary-pr`: the paper's own Fig. 1 results (`vary_pr.json` of liangzid/LoRA-sSecurity; its
  layout and the settings that produced it are in ../shared/data/official/SOURCE.md).

A format validates everything before anything is written: a bad file is one line naming the row
or key and what is allowed.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ttrlab.core.errors import UserError, shown
from ttrlab.core.registry import Registry

REQUIRED = ("task", "method", "attack", "rate", "seed")


@dataclass(frozen=True)
class ExternalRun:
    config: dict[str, Any]  # ttrlab's config keys, the seed included
    metrics: dict[str, float]  # flat names: "clean.accuracy"


@dataclass(frozen=True)
class Format:
    name: str
    about: str
    read: Callable[[Path], list[ExternalRun]]
    # what the file's numbers were produced with, when the format knows it (else --source)
    provenance: str | None = None
    caveats: tuple[str, ...] = ()


FORMATS: Registry[Format] = Registry("import format")


def _number(text: str) -> float | int | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: {shown(value)} is not a finite number")
    return float(value)


def read_csv(path: Path) -> list[ExternalRun]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"cannot read {str(path)!r} as CSV: {type(error).__name__}") from None
    if not rows:
        raise UserError(f"{str(path)!r} has no rows; the layout is in docs/import.md")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UserError(f"{str(path)!r}: missing column(s) {', '.join(missing)}; required: {', '.join(REQUIRED)}")
    if not any("." in c for c in header):
        raise UserError(f"{str(path)!r}: no metric column (a metric's name holds a dot, e.g. clean.accuracy)")
    runs = []
    for line, row in enumerate(rows, start=2):
        where = f"{path.name}, line {line}"
        if None in row or any(v is None for v in row.values()):
            raise UserError(f"{where}: the row has {'more' if None in row else 'fewer'} cells than the header")
        config = {k: _number(v.strip()) for k, v in row.items() if "." not in k and v.strip() != ""}
        for column in REQUIRED:
            if column not in config:
                raise UserError(f"{where}: {column} is empty")
        if not isinstance(config["seed"], int):
            raise UserError(f"{where}: seed {shown(config['seed'])} is not an integer")
        _finite(config["rate"], f"{where}: rate")
        metrics = {k: _finite(_number(v.strip()), f"{where}: {k}") for k, v in row.items() if "." in k and v.strip()}
        runs.append(ExternalRun(config, metrics))
    return runs


FORMATS.register("csv")(Format(
    "csv", "one row per run: config columns (task, method, attack, rate, seed, ...) and metric columns "
           "(names with a dot: clean.accuracy, backdoor.asr); needs --source", read_csv))


# ---- the paper's own Fig. 1 results -----------------------------------------------------------
PAPER_METHODS = {"0": "ff", "1": "lora"}  # the labels of the repository's plot/vary_pr_plot.py
PAPER_METRICS = ("clean.accuracy", "clean.precision", "clean.recall", "clean.f1")
# scripts/2.5.vary_poisonrate.sh of the repository: the settings of every run in the file
PAPER_SETTINGS = {"ff": {"lr": 3e-6}, "lora": {"lr": 3e-5, "rank": 64, "alpha": 64}}


def read_paper_vary_pr(path: Path) -> list[ExternalRun]:
    try:
        documents = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {str(path)!r} as JSON: {type(error).__name__}") from None
    if not (isinstance(documents, list) and len(documents) == 2 and all(isinstance(d, dict) for d in documents)):
        raise UserError(f"{str(path)!r} is not the paper's vary_pr.json: expected a list of two mappings "
                        "(per-seed runs, their mean and std)")
    runs, summaries = documents
    out = []
    for trail, value in _leaves(runs):
        where = f"{path.name}: {'/'.join(trail)}"
        if len(trail) != 7:
            raise UserError(f"{where}: expected 7 levels (task/var/side/frac/model/rate/method), found {len(trail)}")
        task, variance, side, fraction, model, rate, method = trail
        if method not in PAPER_METHODS or side != "y" or fraction != "1.0" or variance != "-1":
            raise UserError(f"{where}: a setting this adapter does not know (method 0|1, side y, "
                            "train_frac 1.0, var_value -1)")
        if not isinstance(value, list) or not all(isinstance(run, list) and len(run) == 4 for run in value):
            raise UserError(f"{where}: expected a list of seeds, each [accuracy, precision, recall, f1]")
        mean = _at(summaries, trail)
        for i, name in enumerate(PAPER_METRICS):  # the file's own means: a damaged copy disagrees
            got = sum(_finite(run[i], f"{where}: {name}") for run in value) / len(value)
            if not isinstance(mean, dict) or not math.isclose(got, _finite(mean.get("mean", [None] * 4)[i], where),
                                                               abs_tol=1e-9):
                raise UserError(f"{where}: the seeds' mean {name} disagrees with the file's summary document")
        name = PAPER_METHODS[method]
        for seed, run in enumerate(value, start=1):  # the scripts' train_times, 1..5
            config = {"task": task, "model": model, "method": name, "attack": "upa", "rate": float(rate),
                      "seed": seed, **PAPER_SETTINGS[name]}
            out.append(ExternalRun(config, dict(zip(PAPER_METRICS, map(float, run)))))
    return out


def _leaves(node: Any, trail: tuple[str, ...] = ()):
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _leaves(child, (*trail, str(key)))
    else:
        yield trail, node


def _at(node: Any, trail: tuple[str, ...]) -> Any:
    for key in trail:
        node = node.get(key) if isinstance(node, dict) else None
    return node


FORMATS.register("paper-vary-pr")(Format(
    "paper-vary-pr", "the paper's own Fig. 1 results (vary_pr.json of liangzid/LoRA-sSecurity): BERT-large, "
                     "UPA, 4 GLUE tasks, 8 rates, FF and LoRA, 5 seeds",
    read_paper_vary_pr,
    provenance="liangzid/LoRA-sSecurity vary_pr.json (commit 94fc01dd9be3, 2024-12-13)",
    caveats=("FF ran at lr 3e-6 and LoRA at 3e-5 (10x): the contrast is method and learning rate together",
             "no clean (0%) run is in the file: accuracy under poisoning, not its loss against a clean baseline",
             "no training loss is in the file: the 'learned' check cannot be judged")))
