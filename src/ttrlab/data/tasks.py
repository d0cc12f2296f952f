"""Task specs: the GLUE tasks, read once from `tasks/glue.yaml` into a registry, and a user's own
task, one YAML file per task (`load_task_file`). `get_task(value)` takes either: a registered
name, or the path of a task file (a value ending in `.yaml` / `.yml`).

A task file (paths relative to the file itself; every key but the optional ones is required)::

    name: topics                 # optional; default: the file's stem
    train: data/train.csv        # local files, or `hub:` below
    dev: data/dev.csv
    format: csv                  # optional: csv | tsv | jsonl | parquet (default: each file's extension)
    text: [title, body]          # one or two text columns (a string for one)
    label: topic                 # the label column
    labels: [sports, politics, science]   # label names; label id i is the i-th name (>= 2 labels)
    label_values: [0, 1, 2]      # optional: how the label column writes label i (default: the names)
    positive_label: 1            # optional, binary tasks only: the class P/R/F1 treat as positive (default 1)
    backdoor_target: sports      # optional: default target_label, a name or an id
                                 # (default: positive_label for 2 labels, label 0 for more)

or, instead of `train`/`dev`, a Hugging Face dataset loaded with `datasets`::

    hub: {path: fancyzhx/ag_news, config: null, train: train, dev: test, revision: null}

A label cell must equal one of `label_values` (compared as text: a cell 2 or "2" matches a value
2); `labels` alone means the column holds the names. Identity: a file task's run key holds the
task's name and the SHA-256 of the task file and of its data files (not its path), so a changed
data file is a new run and a moved one is not (`TaskSpec.content_sha256`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ttrlab.core.errors import UserError, did_you_mean, first_line, shown
from ttrlab.core.registry import Registry

TASK_FILE_SUFFIXES = (".yaml", ".yml")
# file format -> the extensions that imply it
FORMATS = {"csv": (".csv",), "tsv": (".tsv",), "jsonl": (".jsonl", ".ndjson"), "parquet": (".parquet", ".pq")}
SPLITS = ("train", "dev")


@dataclass(frozen=True)
class TsvLayout:
    header: bool
    text: tuple[str | int, ...]  # column names (header) or positions (no header)
    label: str | int
    label_values: tuple[str, ...]  # raw value of label id 0, 1, ...
    n_columns: int | None = None  # required column count where the file has no header


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face dataset (`datasets.load_dataset(path, config, split=..., revision=...)`)."""

    path: str
    config: str | None
    train: str
    dev: str
    revision: str | None = None

    def split_name(self, split: str) -> str:
        return self.train if split == "train" else self.dev


@dataclass(frozen=True)
class TaskSpec:
    name: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    positive_label: int
    # GLUE tasks: the folder, the nyu-mll/glue config and the TSV layout
    glue_dir: str | None = None
    hub_config: str | None = None
    tsv: TsvLayout | None = None
    # task files: where the data is and how labels are written
    label_column: str | None = None
    label_values: tuple[str, ...] | None = None
    files: tuple[tuple[str, Path, str], ...] = ()  # (split, path, format)
    hub: HubSource | None = None
    origin: Path | None = None  # the task file
    backdoor_target: int = 1
    _digest: str | None = field(default=None, repr=False, compare=False)

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_file_task(self) -> bool:
        return self.origin is not None

    def data_file(self, split: str) -> tuple[Path, str]:
        for name, path, fmt in self.files:
            if name == split:
                return path, fmt
        raise KeyError(split)

    def content_sha256(self) -> str | None:
        """SHA-256 over the task file and its data files (None for a registered task)."""
        return self._digest

    def provenance(self) -> dict[str, Any]:
        """What a result's data section records: the task file's and each data file's SHA-256."""
        if self.origin is None:
            return {}
        record: dict[str, Any] = {"task_name": self.name, "task_file": str(self.origin),
                                  "task_sha256": file_sha256(self.origin)}
        if self.hub is not None:
            record["hub"] = {"path": self.hub.path, "config": self.hub.config, "revision": self.hub.revision}
        for split, path, fmt in self.files:
            record[f"{split}_file"] = {"path": str(path), "format": fmt, "sha256": file_sha256(path)}
        return record

    def label_id(self, value: Any, what: str) -> int:
        """A label given as an id or a name (target_label, positive_label) as its id."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < self.num_labels:
            return value
        if isinstance(value, str) and value in self.label_names:
            return self.label_names.index(value)
        raise UserError(f"{what} {shown(value)} is not a label of task {self.name!r}; allowed: ids 0 to "
                        f"{self.num_labels - 1} or names {', '.join(self.label_names)}")


def _glue_spec(name: str, raw: dict[str, Any]) -> TaskSpec:
    tsv = raw["tsv"]
    return TaskSpec(
        name=name,
        glue_dir=raw["glue_dir"],
        hub_config=raw["hub_config"],
        text_fields=tuple(raw["text_fields"]),
        label_names=tuple(raw["label_names"]),
        positive_label=int(raw["positive_label"]),
        tsv=TsvLayout(
            header=bool(tsv["header"]),
            text=tuple(tsv["text"]),
            label=tsv["label"],
            label_values=tuple(str(v) for v in tsv["label_values"]),
            n_columns=tsv.get("n_columns"),
        ),
        backdoor_target=int(raw.get("backdoor_target", raw["positive_label"])),
    )


TASKS: Registry[TaskSpec] = Registry("task")
for _name, _raw in yaml.safe_load(
    resources.files("ttrlab.data").joinpath("tasks/glue.yaml").read_text(encoding="utf-8")
).items():
    TASKS.register(_name)(_glue_spec(_name, _raw))


# ---- task files ------------------------------------------------------------------------------
def is_task_file(value: Any) -> bool:
    """A task value names a file when it ends in .yaml / .yml (a registered name never does)."""
    return isinstance(value, str) and value.lower().endswith(TASK_FILE_SUFFIXES)


def get_task(value: Any) -> TaskSpec:
    """The task a config's `task` names: a registered task, or a task file (path)."""
    if is_task_file(value):
        return load_task_file(value)
    if value not in TASKS:
        allowed = TASKS.names()
        raise UserError(f"unknown task {shown(value)}{did_you_mean(str(value), allowed)}; allowed: "
                        f"{', '.join(allowed)}, or a task file (*.yaml)")
    return TASKS.get(value)


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def file_sha256(path: Path) -> str:
    return _sha256_stamped(*_stamp(Path(path)))


@functools.lru_cache(maxsize=256)
def _sha256_stamped(path: str, mtime_ns: int, size: int) -> str:
    # keyed on (mtime, size): a rewritten file is hashed again, an unchanged one is not
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_task_file(value: str | os.PathLike) -> TaskSpec:
    """The TaskSpec a task file defines (see the module docstring); one-line UserErrors."""
    from ttrlab.core.io import path_errors, user_path

    path = user_path(value, "task file")
    with path_errors("task file", path):
        if not path.is_file():
            raise UserError(f"task file {str(path)!r} is not a file" if os.path.lexists(path)
                            else f"task file {str(path)!r} does not exist")
        path = path.resolve()
        spec = _load_stamped(*_stamp(path))
    # the data files may change without the task file changing: the digest is taken each time
    digests = {"task": file_sha256(path)}
    for split, data, _ in spec.files:
        with path_errors(f"task file {path}: {split} data file", data):
            digests[split] = file_sha256(data)
    blob = json.dumps(digests, sort_keys=True).encode()
    return dataclasses.replace(spec, _digest=hashlib.sha256(blob).hexdigest())


TOP_KEYS = ("name", "description", "train", "dev", "format", "hub", "text", "label", "labels", "label_values",
            "positive_label", "backdoor_target")
HUB_KEYS = ("path", "config", "train", "dev", "revision")


@functools.lru_cache(maxsize=32)
def _load_stamped(path_text: str, mtime_ns: int, size: int) -> TaskSpec:
    from ttrlab.core.io import read_text

    path = Path(path_text)
    where = f"task file {path_text}"
    try:
        raw = yaml.safe_load(read_text(path, "task file"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{where}: not valid YAML{at}: {getattr(error, 'problem', None) or first_line(error)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{where}: must be a mapping of task keys ({', '.join(TOP_KEYS)}), got {shown(raw)}")
    _check_keys(raw, TOP_KEYS, where)
    for key in ("text", "label", "labels"):
        if key not in raw:
            raise UserError(f"{where}: missing key {key!r}")

    text = raw["text"]
    text = [text] if isinstance(text, str) else text
    if not (isinstance(text, list) and 1 <= len(text) <= 2 and all(isinstance(c, str) and c for c in text)):
        raise UserError(f"{where}: text must be one or two column names, got {shown(raw['text'])}")
    label = raw["label"]
    if not isinstance(label, str) or not label:
        raise UserError(f"{where}: label must be a column name, got {shown(label)}")

    names = raw["labels"]
    if not isinstance(names, list) or not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in names):
        raise UserError(f"{where}: labels must be a list of label names, got {shown(names)}")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: labels {names} repeat a name")
    if len(names) < 2:
        raise UserError(f"{where}: labels {names} has {len(names)} label(s); a classification task needs at least 2")
    values = raw.get("label_values", names)
    if not isinstance(values, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
        raise UserError(f"{where}: label_values must be a list of strings or integers, got {shown(values)}")
    values = [cell_text(v) for v in values]
    if len(values) != len(names) or len(set(values)) != len(values):
        raise UserError(f"{where}: label_values {values} must give each of the {len(names)} labels {names} "
                        f"its own value")

    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{where}: name must be non-empty text, got {shown(name)}")
    partial = TaskSpec(name=name.strip(), text_fields=(), label_names=tuple(names), positive_label=1)
    if "positive_label" in raw and len(names) != 2:
        raise UserError(f"{where}: positive_label applies to binary tasks only; this one has {len(names)} labels "
                        f"(its F1 is macro-averaged)")
    positive = partial.label_id(raw.get("positive_label", 1), f"{where}: positive_label")
    default_target = positive if len(names) == 2 else 0
    target = partial.label_id(raw.get("backdoor_target", default_target), f"{where}: backdoor_target")

    files, hub = _sources(raw, path, where)
    return TaskSpec(name=name.strip(), text_fields=tuple(text), label_names=tuple(names), positive_label=positive,
                    label_column=label, label_values=tuple(values), files=files, hub=hub, origin=path,
                    backdoor_target=target)


def _sources(raw: dict[str, Any], path: Path, where: str) -> tuple[tuple[tuple[str, Path, str], ...], HubSource | None]:
    has_files = "train" in raw or "dev" in raw
    if has_files == ("hub" in raw):
        raise UserError(f"{where}: give either train and dev (local files) or hub (a Hugging Face dataset)"
                        if has_files else f"{where}: missing key 'train' and 'dev' (local files), or 'hub'")
    if "hub" in raw:
        if "format" in raw:
            raise UserError(f"{where}: format applies to local files, not to hub")
        hub = raw["hub"]
        if not isinstance(hub, dict):
            raise UserError(f"{where}: hub must be a mapping ({', '.join(HUB_KEYS)}), got {shown(hub)}")
        _check_keys(hub, HUB_KEYS, f"{where}: hub")
        for key in ("path", "train", "dev"):
            if not isinstance(hub.get(key), str) or not hub[key]:
                raise UserError(f"{where}: hub.{key} must be given as text, got {shown(hub.get(key))}")
        for key in ("config", "revision"):
            if hub.get(key) is not None and not isinstance(hub[key], str):
                raise UserError(f"{where}: hub.{key} must be text or null, got {shown(hub[key])}")
        return (), HubSource(hub["path"], hub.get("config"), hub["train"], hub["dev"], hub.get("revision"))
    fmt = raw.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"{where}: unsupported format {shown(fmt)}{did_you_mean(str(fmt), FORMATS)}; "
                        f"allowed: {', '.join(FORMATS)}")
    files = []
    for split in SPLITS:
        if not isinstance(raw.get(split), str) or not raw[split]:
            raise UserError(f"{where}: {split} must be a data file path, got {shown(raw.get(split))}")
        from ttrlab.core.io import path_errors, user_path

        data = path.parent / user_path(raw[split], f"{where}: {split} data file")  # relative to the task file
        with path_errors(f"{where}: {split} data file", data):
            data = data.resolve()
            if not data.is_file():
                raise UserError(f"{where}: {split} data file {str(data)!r} is not a file" if data.exists()
                                else f"{where}: {split} data file {str(data)!r} does not exist")
        files.append((split, data, fmt or _format_of(data, where)))
    return tuple(files), None


def _format_of(path: Path, where: str) -> str:
    suffix = path.suffix.lower()
    for fmt, suffixes in FORMATS.items():
        if suffix in suffixes:
            return fmt
    known = ", ".join(s for suffixes in FORMATS.values() for s in suffixes)
    raise UserError(f"{where}: unsupported format of {str(path)!r} (extension {suffix or 'none'!r}); allowed: {known}, "
                    f"or set format: {' | '.join(FORMATS)}")


def _check_keys(raw: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {shown(key)}{did_you_mean(str(key), allowed)}; "
                            f"allowed: {', '.join(allowed)}")


def cell_text(value: Any) -> str:
    """A label cell as text, so 2, 2.0 (a JSON number, a float column) and "2" compare equal."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def anchor_task_paths(data: Any, folder: Path) -> Any:
    """`data` (a parsed sweep spec) with every relative task-file path under a `task` key made
    absolute against `folder` (the spec's own folder): a spec names its task files relative to
    itself, so it runs the same from any working directory."""
    def anchored(value: Any) -> Any:
        if is_task_file(value) and "\x00" not in value:
            try:
                path = Path(value).expanduser()
                return value if path.is_absolute() else str((folder / path).resolve())
            except (OSError, RuntimeError):  # a loop, a name too long, ~nobody: `load_task_file` says so in one line
                return value if Path(value).is_absolute() else str(folder / value)
        if isinstance(value, list):
            return [anchored(v) for v in value]
        return value

    if isinstance(data, dict):
        return {k: anchored(v) if k == "task" else anchor_task_paths(v, folder) for k, v in data.items()}
    if isinstance(data, list):
        return [anchor_task_paths(v, folder) for v in data]
    return data


@functools.lru_cache(maxsize=64)
def task_label(value: Any) -> Any:
    """How a report names a task: a registered name (or anything else) as it is, a task file by
    the `name` it gives (else the file's stem; also where the file is no longer there)."""
    if not is_task_file(value):
        return value
    try:
        raw = yaml.safe_load(Path(value).read_text(encoding="utf-8"))
        name = raw.get("name") if isinstance(raw, dict) else None
    except (OSError, RuntimeError, ValueError, yaml.YAMLError):  # gone, a loop, a NUL, not UTF-8, not YAML
        name = None
    return name.strip() if isinstance(name, str) and name.strip() else Path(value).stem
