"""`ttrlab status`: what a results database holds and what is being computed into it right now,
from the runs and the claims of every driver (`claims.WorkQueue`), without writing anything.

Per sweep: planned, finished, failed, running (claimed by a driver whose lease is alive),
stalled (claimed, lease expired: the driver is gone and the next driver will take the run
over) and pending (the rest). With a spec the counts are exact, from its run keys; without one
they come from what the drivers stored (`sweeps.planned_runs`, the runs linked to each sweep,
claims by sweep).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from ttrlab.sweep.spec import SweepSpec
from ttrlab.sweep.store import FAILED, FINISHED, ResultStore, Run, Sweep, SweepRun


@dataclass
class SweepStatus:
    name: str
    spec_sha256: str
    planned: int
    finished: int = 0
    failed: int = 0
    running: int = 0
    stalled: int = 0
    claims: list[dict[str, Any]] = field(default_factory=list)  # of this sweep, slowest first

    @property
    def pending(self) -> int:
        return max(0, self.planned - self.finished - self.failed - self.running - self.stalled)

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["pending"] = self.pending
        return document


def _split(status: SweepStatus, claims: list[dict[str, Any]]) -> None:
    status.claims = sorted(claims, key=lambda claim: claim["running_seconds"], reverse=True)
    status.stalled = sum(claim["expired"] for claim in claims)
    status.running = len(claims) - status.stalled


def spec_status(store: ResultStore, spec: SweepSpec) -> SweepStatus:
    """Exact counts for one spec's runs, whichever sweep or driver stored or claims them."""
    keys = [run.run_key for run in spec.expand().runs]
    stored = store.statuses(spec.kind, keys)
    wanted = set(keys)
    status = SweepStatus(spec.name, spec.sha256, planned=len(keys),
                         finished=sum(value == FINISHED for value in stored.values()),
                         failed=sum(value == FAILED for value in stored.values()))
    _split(status, [claim for claim in store.claims(spec.kind)
                    if claim["run_key"] in wanted and claim["run_key"] not in stored])
    return status


def database_status(store: ResultStore) -> list[SweepStatus]:
    """Counts for every sweep the database has seen, from what its drivers stored."""
    with store.session() as s:
        sweeps = list(s.execute(select(Sweep.id, Sweep.name, Sweep.spec_sha256, Sweep.planned_runs).order_by(Sweep.id)))
        linked = s.execute(select(SweepRun.sweep_id, Run.status, func.count())
                           .join(Run, Run.id == SweepRun.run_id).group_by(SweepRun.sweep_id, Run.status)).all()
    counts: dict[tuple[int, str], int] = {(sweep_id, state): n for sweep_id, state, n in linked}
    claims = store.claims()
    statuses = []
    for sweep_id, name, sha, planned in sweeps:
        status = SweepStatus(name, sha, planned=planned or 0, finished=counts.get((sweep_id, FINISHED), 0),
                             failed=counts.get((sweep_id, FAILED), 0))
        _split(status, [claim for claim in claims if claim["sweep_id"] == sweep_id])
        statuses.append(status)
    return statuses


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def render(statuses: list[SweepStatus], where: str, slowest: int = 10) -> str:
    """The text `ttrlab status` prints."""
    lines = [f"database {where}"]
    if not statuses:
        return "\n".join([*lines, "  no sweeps yet"])
    width = max(len(f"{s.name} ({s.spec_sha256[:8]})") for s in statuses)
    header = ("planned", "finished", "running", "failed", "pending")
    lines.append(f"  {'sweep':{width}s}  " + "  ".join(f"{h:>8s}" for h in header))
    for s in statuses:
        values = (s.planned, s.finished, s.running, s.failed, s.pending)
        lines.append(f"  {f'{s.name} ({s.spec_sha256[:8]})':{width}s}  " + "  ".join(f"{v:8d}" for v in values)
                     + (f"  ({s.stalled} stalled: lease expired, the next driver takes them over)" if s.stalled else ""))
    claims = sorted((c for s in statuses for c in s.claims), key=lambda c: c["running_seconds"], reverse=True)
    if claims:
        lines.append(f"running now, slowest first ({min(slowest, len(claims))} of {len(claims)}):")
        for claim in claims[:slowest]:
            state = (f"lease expired {_duration(claim['heartbeat_age'] - claim['lease_seconds'])} ago"
                     if claim["expired"] else f"heartbeat {_duration(claim['heartbeat_age'])} ago")
            lines.append(f"  {_duration(claim['running_seconds']):>12s}  {claim['label'] or claim['run_key']}  "
                         f"on {claim['host']} pid {claim['pid']}  ({state})")
    return "\n".join(lines)


def as_json(statuses: list[SweepStatus]) -> list[dict[str, Any]]:
    def plain(value):
        return value.isoformat() if isinstance(value, dt.datetime) else value

    return [{k: ([{ck: plain(cv) for ck, cv in c.items()} for c in v] if k == "claims" else v)
             for k, v in s.to_dict().items()} for s in statuses]
