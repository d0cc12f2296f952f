"""Read a task file's splits (`tasks.load_task_file`): CSV and TSV (a header row, standard CSV
quoting), JSON Lines (one object per line), Parquet (pyarrow), or a Hugging Face dataset
(`datasets`). Every reader yields (where, row) pairs, `where` naming the file and line (or row),
so a missing column or an unknown label is one line naming it. Nothing here runs code from a
data file: CSV and JSON are parsed as text, Parquet through pyarrow's reader, and a hub dataset
is loaded without `trust_remote_code`.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ttrlab.data.examples import Example
from ttrlab.data.tasks import TaskSpec, cell_text
from ttrlab.core.errors import UserError, first_line
from ttrlab.core.io import reading

Rows = tuple[list[str], Iterator[tuple[str, dict[str, Any]]]]  # (columns the source has, rows)


def load_file_split(task: TaskSpec, split: str) -> list[Example]:
    if task.hub is not None:
        columns, rows = _hub_rows(task, split)
        where = f"{task.hub.path} ({task.hub.split_name(split)})"
        examples = _examples(task, where, columns, rows)
    else:
        path, fmt = task.data_file(split)
        where = str(path)
        with reading(path):
            columns, rows = READERS[fmt](path)
            examples = _examples(task, where, columns, rows)
    if split == "train":
        check_classes(task, examples, where)
    return examples


def check_classes(task: TaskSpec, examples: list[Example], where: str) -> None:
    """Training data must hold at least two classes: with one, every model learns the constant
    and the run measures nothing (and UPA has no other label to flip to)."""
    classes = {example.label for example in examples}
    if len(classes) < 2:
        only = task.label_names[next(iter(classes))]
        raise UserError(f"{where}: the training data holds one class only ({only!r}, all {len(examples)} rows); "
                        f"a classification task trains on at least 2 of its labels {list(task.label_names)}")


def _examples(task: TaskSpec, where: str, columns: list[str], rows) -> list[Example]:
    """Examples from (where, row) pairs. Messages name the file, the line (or row) and the
    column, never a cell's or a header's content: a task file may point at any file, and its
    first line would then reach stderr, the database and the report."""
    needed = (*task.text_fields, task.label_column)
    for column in dict.fromkeys(needed):
        at = [i + 1 for i, name in enumerate(columns) if name == column]
        if not at:
            raise UserError(f"{where}: no column {column!r} (task {task.name!r} reads columns "
                            f"{', '.join(map(repr, dict.fromkeys(needed)))}; the file has {len(columns)} columns, "
                            "none of them named so)")
        if len(at) > 1:
            raise UserError(f"{where}: column {column!r} appears {len(at)} times (columns {', '.join(map(str, at))}); "
                            "give each column its own name")
    ids = {value: i for i, value in enumerate(task.label_values)}
    allowed = list(task.label_values)
    examples: list[Example] = []
    for at, row in rows:
        raw = row.get(task.label_column)
        value = None if raw is None or isinstance(raw, (dict, list)) else cell_text(raw)
        if value not in ids:
            raise UserError(f"{at}: the label (column {task.label_column!r}) is not one of {allowed}"
                            + ("" if allowed == list(task.label_names) else f" (labels {list(task.label_names)})"))
        texts = []
        for column in task.text_fields:
            cell = row.get(column)
            if cell is None or (isinstance(cell, str) and not cell.strip()):
                raise UserError(f"{at}: column {column!r} is empty; every text cell needs text")
            if not isinstance(cell, str):
                raise UserError(f"{at}: column {column!r} holds {_kind(cell)}, not text; every text cell needs text")
            texts.append(cell.strip())
        examples.append(Example(texts=tuple(texts), label=ids[value], row=len(examples)))
    if not examples:
        raise UserError(f"{where}: no rows (task {task.name!r})")
    return examples


def _kind(value: Any) -> str:
    """A value's type in words (what a message may say about a cell)."""
    return {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list"}.get(
        type(value), f"a {type(value).__name__} value")


def _delimited(delimiter: str):
    def read(path: Path) -> Rows:
        handle = open(path, encoding="utf-8-sig", newline="")
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader, None)
        except csv.Error as error:
            handle.close()
            raise UserError(f"malformed file {str(path)!r} at line 1: {error}; it must be UTF-8 text") from None
        if header is None:
            handle.close()
            raise UserError(f"malformed file {str(path)!r}: the file is empty (a header row is needed)")
        header = [c.strip() for c in header]

        def rows():
            with handle:
                try:
                    for row in reader:
                        at = f"{path}:{reader.line_num}"
                        if not row:
                            continue  # a blank line
                        if len(row) != len(header):
                            raise UserError(f"malformed row at {at}: {len(row)} columns, the header has {len(header)}")
                        yield at, dict(zip(header, row))
                except csv.Error as error:  # NUL bytes: a binary file or UTF-16
                    raise UserError(f"malformed file {str(path)!r} at line {reader.line_num}: {error}; "
                                    f"it must be UTF-8 text") from None

        return header, rows()

    return read


def _jsonl(path: Path) -> Rows:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    parsed: list[tuple[str, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        at = f"{path}:{number}"
        try:
            row = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            raise UserError(f"malformed JSON at {at}: {error.msg} (column {error.colno})") from None
        except _DuplicateKey as duplicate:
            raise UserError(f"malformed JSON at {at}: the object's key number {duplicate.args[0]} repeats an earlier key "
                            "(JSON would keep only the last one)") from None
        if not isinstance(row, dict):
            raise UserError(f"malformed JSON at {at}: each line must be an object, got {_kind(row)}")
        columns.update(dict.fromkeys(row))
        parsed.append((at, row))
    # every line must have the columns the task reads: checked per row via row.get (None: empty)
    return list(columns), iter(parsed)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice is an error (json keeps the last one, silently).
    The key is named only by its position, as a message may not echo the file."""
    seen: set[str] = set()
    for number, (key, _) in enumerate(pairs, start=1):
        if key in seen:
            raise _DuplicateKey(number)
        seen.add(key)
    return dict(pairs)


def _parquet(path: Path) -> Rows:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise UserError(f"reading {str(path)!r} needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises ArrowInvalid and OSError subtypes for non-Parquet bytes
        raise UserError(f"malformed Parquet file {str(path)!r}: {first_line(error)}") from None
    return list(table.column_names), ((f"{path} row {i + 1}", row) for i, row in enumerate(table.to_pylist()))


READERS = {"csv": _delimited(","), "tsv": _delimited("\t"), "jsonl": _jsonl, "parquet": _parquet}


def _hub_rows(task: TaskSpec, split: str) -> Rows:
    hub = task.hub
    name = hub.split_name(split)
    try:
        import datasets

        rows = datasets.load_dataset(hub.path, hub.config, split=name, revision=hub.revision)
    except Exception as error:  # offline, no `datasets`, an unknown dataset or split: the user's to fix
        raise UserError(f"cannot load {hub.path!r} split {name!r} from the hub (task {task.name!r}): "
                        f"{first_line(error)}") from None
    return list(rows.column_names), ((f"{hub.path} ({name}) row {i + 1}", row) for i, row in enumerate(rows))
