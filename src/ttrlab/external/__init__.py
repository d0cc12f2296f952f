"""Results from outside ttrlab, stored beside its own: `ttrlab import FILE --format NAME --db DB`.

Imported runs are runs of the kind `external`: they were never run here and cannot be rerun. A
run's config is the file's (in ttrlab's keys) plus `source`, its provenance, so an imported run
never shares a cell with a ttrlab run or with another source's; its run key hashes that config.
The claims engine decides them like any run (a claims file whose claims say `kind: external`,
e.g. report/claims/official_claims.yaml for the paper's own Fig. 1 data).

Importing is idempotent: a run already stored under its key is kept as it is (the store keeps the
first finished result), so importing a file twice stores each run once. The whole file is read and
checked before the first run is written.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ttrlab.core.errors import UserError, shown
from ttrlab.external.formats import FORMATS, ExternalRun, Format

KIND = "external"


@dataclass(frozen=True)
class Imported:
    new: int
    already: int
    source: str
    caveats: tuple[str, ...]


def run_key(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def read(path: str | Path, format_name: str, source: str | None = None) -> tuple[list[ExternalRun], str, Format]:
    """The runs of a file in a registered format, each config carrying `source`."""
    form = FORMATS.get(format_name)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{str(path)!r} is not a file")
    source = source or form.provenance
    if not source:
        raise UserError(f"format {format_name!r} needs --source: what produced these numbers (a citation or URL)")
    runs = [ExternalRun({**run.config, "source": source}, run.metrics) for run in form.read(path)]
    seen: dict[str, ExternalRun] = {}
    for run in runs:
        key = run_key(run.config)
        if key in seen:
            raise UserError(f"{path.name}: the run {shown(run.config)} appears twice")
        seen[key] = run
    return runs, source, form


def import_file(path: str | Path, format_name: str, db, source: str | None = None) -> Imported:
    """Read, check, then store every run of the file in the results database `db`."""
    from ttrlab.sweep.store import ResultStore

    runs, source, form = read(path, format_name, source)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    provenance = {"source": source, "format": form.name, "file": Path(path).name, "sha256": digest,
                  "caveats": list(form.caveats)}
    with ResultStore(db) as store:
        keys = [run_key(run.config) for run in runs]
        statuses = store.statuses(KIND, keys)
        new = 0
        for key, run in zip(keys, runs):
            if statuses.get(key) == "finished":
                continue
            store.record(sweep_id=None, kind=KIND, run_key=key, config=run.config,
                         result=_document(key, run, provenance), host="imported")
            new += 1
    return Imported(new, len(runs) - new, source, form.caveats)


def _document(key: str, run: ExternalRun, provenance: dict) -> dict:
    """A result document of schema 2 (core.result.RunResult) holding what the file holds."""
    metrics: dict = {}
    for name, value in run.metrics.items():
        node = metrics
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return {"schema_version": 2, "kind": KIND, "run_key": key, "config": run.config, "versions": {},
            "runtime": None, "data": {}, "poison": {}, "method": {}, "metrics": metrics, "train": None,
            "external": provenance}


__all__ = ["FORMATS", "KIND", "ExternalRun", "Format", "Imported", "import_file", "read", "run_key"]
