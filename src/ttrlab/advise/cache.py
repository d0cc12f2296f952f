"""Stored probes: one JSON line per probe record, keyed by `probe.probe_key` (θ₀ identity,
learning rate, k, probe version), so calibrating again, or advising on a candidate the
calibration already probed, computes nothing twice. A line of another probe version, or one
that cannot be parsed, is ignored (and recomputed), never trusted."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ttrlab.core.errors import UserError


class ProbeCache:
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.records: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            if not self.path.is_file():
                raise UserError(f"probes file {str(self.path)!r} is not a file; allowed: a JSON-lines file or a new path")
            from ttrlab.advise.probe import PROBE_VERSION

            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get("probe", {}).get("version") == PROBE_VERSION:
                    self.records[record["key"]] = record

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, sort_keys=True) + "\n")


def probe_all(configs: list[dict[str, Any]], settings, cache: ProbeCache, progress=None,
              skipped: list[tuple[dict, str]] | None = None, runtime=None) -> list[dict[str, Any] | None]:
    """The probe record of every config (flat keys), from the cache where it holds one. With a
    `skipped` list, a config the probe cannot compute (e.g. a clean-label backdoor: the probe's
    poisoned twins need the attack at rate 1) is None and goes there with the reason; without
    one, its error goes up (a candidate named by the user). `runtime`: where a probe the cache does
    not hold is computed; without one, such a probe is an error (a caller that only reads stored
    probes, such as the report, never computes one)."""
    from ttrlab.advise.probe import DataCache, probe, probe_key

    data = DataCache()
    records = []
    for i, values in enumerate(configs):
        key = probe_key(values, settings)
        record = cache.get(key)
        if record is None:
            if runtime is None:
                raise UserError(f"no stored probe for {values.get('method')} {values.get('attack')} and no device to "
                                "compute it on")
            try:
                record = probe(values, settings, data, runtime=runtime)
            except UserError as error:
                if skipped is None:
                    raise
                skipped.append((values, str(error)))
                records.append(None)
                continue
            cache.put(record)
        if progress is not None:
            progress(i + 1, len(configs), record)
        records.append(record)
    return records
