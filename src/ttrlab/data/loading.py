"""Load a task split from a local GLUE folder (original TSV layout) or from the hub.

GLUE's test splits carry no labels, so evaluation uses `dev` (the hub calls it `validation`).
Every TSV is read with `csv.QUOTE_NONE` and `utf-8-sig`: GLUE files hold unbalanced quotes
(default quoting silently merges rows) and the MRPC files start with a BOM.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from ttrlab.data.examples import Example
from ttrlab.data.tasks import TaskSpec
from ttrlab.core.errors import UserError
from ttrlab.core.io import path_errors, reading
from ttrlab.data.folders import GLUE_DOWNLOAD_HINT, resolve_folder

SPLITS = ("train", "dev")
_HUB_SPLIT = {"train": "train", "dev": "validation"}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # QQP/QNLI rows can be long


def resolve_glue_dir(data_dir: str | None) -> Path:
    """--data-dir, else $TTRLAB_GLUE_DIR, else the nearest `shared/data/glue` above the cwd
    (`data.folders`)."""
    return resolve_folder("glue", data_dir)


def load_split(task: TaskSpec, split: str, data_dir: str | None = None, source: str = "local") -> list[Example]:
    """A split of a GLUE task (from `data_dir` or the hub, as `source` says) or of a task file (its
    own files or dataset: `data_dir` and `source` do not apply)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    if task.is_file_task:
        from ttrlab.data.files import load_file_split

        return load_file_split(task, split)
    if source == "hub":
        return _load_hub(task, split)
    path = resolve_glue_dir(data_dir) / task.glue_dir / f"{split}.tsv"
    with path_errors("data file", path):
        found = path.is_file()
    if not found:
        raise UserError(f"missing data file {str(path)!r} ({task.name} {split}); {GLUE_DOWNLOAD_HINT}")
    examples = read_glue_tsv(task, path)
    if split == "train":
        from ttrlab.data.files import check_classes

        check_classes(task, examples, str(path))
    return examples


def read_glue_tsv(task: TaskSpec, path: Path) -> list[Example]:
    layout = task.tsv
    label_ids = {value: i for i, value in enumerate(layout.label_values)}
    with reading(path), open(path, encoding="utf-8-sig", newline="") as handle:
        try:
            examples = _read_rows(layout, label_ids, path, handle)
        except csv.Error as error:  # NUL bytes: a binary file, or UTF-16 saved by a spreadsheet
            raise UserError(f"malformed TSV {str(path)!r}: {error}; it must be UTF-8 text, tab-separated") from None
    if not examples:
        raise UserError(f"malformed TSV {str(path)!r}: no rows")
    return examples


def _read_rows(layout, label_ids: dict[str, int], path: Path, handle) -> list[Example]:
    examples: list[Example] = []
    rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
    if layout.header:
        header = next(rows, None)
        if header is None:
            raise UserError(f"malformed TSV {str(path)!r}: the file is empty")
        missing = [c for c in (*layout.text, layout.label) if c not in header]
        if missing:  # the header's own names are the file's content: not echoed
            raise UserError(f"malformed TSV {str(path)!r}: the header (line 1) lacks column(s) {missing}")
        repeated = [c for c in (*layout.text, layout.label) if header.count(c) > 1]
        if repeated:
            raise UserError(f"malformed TSV {str(path)!r}: the header (line 1) names column {repeated[0]!r} "
                            f"{header.count(repeated[0])} times")
        text_cols = [header.index(c) for c in layout.text]
        label_col = header.index(layout.label)
        width = len(header)
    else:
        text_cols, label_col, width = list(layout.text), int(layout.label), layout.n_columns
    first_line = 2 if layout.header else 1
    for line, row in enumerate(rows, start=first_line):
        if not row:
            continue  # a blank trailing line
        if any("\x00" in cell for cell in row):
            raise UserError(f"malformed TSV row at {path}:{line}: a NUL byte (a binary file?); it must be UTF-8 text")
        if len(row) != width:
            raise UserError(
                f"malformed TSV row at {path}:{line}: {len(row)} columns, expected {width}"
            )
        raw_label = row[label_col].strip()
        if raw_label not in label_ids:
            raise UserError(f"malformed TSV row at {path}:{line}: the label (column {label_col + 1}) is not one of "
                            f"{list(label_ids)}")
        texts = tuple(row[c].strip() for c in text_cols)
        examples.append(Example(texts=texts, label=label_ids[raw_label], row=len(examples)))
    return examples


def _load_hub(task: TaskSpec, split: str) -> list[Example]:
    try:
        import datasets

        rows = datasets.load_dataset("nyu-mll/glue", task.hub_config, split=_HUB_SPLIT[split])
    except Exception as error:  # offline, no `datasets`, the hub down or changed: the user's to fix
        text = str(error).strip().splitlines()
        raise UserError(f"cannot load {task.name} from the hub (nyu-mll/glue): {text[0] if text else type(error).__name__}; "
                        f"use --data-source local with a GLUE folder (--data-dir)") from None
    return [
        Example(texts=tuple(row[f] for f in task.text_fields), label=int(row["label"]), row=i)
        for i, row in enumerate(rows)
    ]


def seeded_subset(examples: list[Example], size: int | None, rng: np.random.Generator) -> list[Example]:
    """A random subset of `size` examples drawn by `rng` (not the first rows: GLUE files are not
    shuffled in every task), kept in source order. None or size >= len returns all."""
    if size is None or size >= len(examples):
        return list(examples)
    chosen = np.sort(rng.choice(len(examples), size=size, replace=False))
    return [examples[i] for i in chosen]
