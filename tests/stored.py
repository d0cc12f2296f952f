"""What tests read back from a results database and from the processes of a sweep, on SQLite
and PostgreSQL alike: stored rows, a full snapshot, the integrity a killed or racing driver
must never break, and a sweep's worker processes (/proc)."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import is_postgres


def query(db, sql: str) -> list[tuple]:
    """Rows of one SQL query against `db` (a path or a URL), on a connection of its own."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool
    from ttrlab.sweep.store import database_url

    engine = create_engine(database_url(db), poolclass=NullPool)
    try:
        with engine.connect() as con:
            return [tuple(row) for row in con.execute(text(sql))]
    finally:
        engine.dispose()


def parsed(value):
    return json.loads(value) if isinstance(value, str) else value  # SQLite hands JSON back as text


def rows(db):
    """(run_key, status, result, error) per stored run in the order stored, result parsed."""
    return [(key, status, parsed(result), error)
            for key, status, result, error in query(db, "SELECT run_key, status, result, error FROM runs ORDER BY id")]


def stored_rows(db) -> list[tuple] | None:
    """`rows(db)`, or None while the driver has not created the database and its tables yet."""
    from sqlalchemy.exc import DBAPIError

    if not is_postgres(db) and not Path(db).exists():
        return None  # do not create the file before the driver does
    try:
        return rows(db)
    except DBAPIError:  # no such table / relation "runs" does not exist (yet)
        return None


def snapshot(db) -> dict[str, tuple]:
    """{run_key: everything stored about the run}: row, sorted metrics and sweep links."""
    runs = query(db, "SELECT id, kind, run_key, status, result, error, started_at, finished_at, seconds, "
                      "attempts, versions, host FROM runs")
    metrics, links = {}, {}
    for run_id, name, value in query(db, "SELECT run_id, name, value FROM metrics ORDER BY run_id, name"):
        metrics.setdefault(run_id, []).append((name, value))
    for run_id, sweep_id in query(db, "SELECT run_id, sweep_id FROM sweep_runs ORDER BY run_id, sweep_id"):
        links.setdefault(run_id, []).append(sweep_id)
    return {row[2]: (*row[:4], parsed(row[4]), *row[5:10], parsed(row[10]), row[11],
                     tuple(metrics.get(row[0], ())), tuple(links.get(row[0], ()))) for row in runs}


def check_integrity(db) -> None:
    """What a killed or racing driver must never leave behind, on either backend: a duplicate
    (kind, run_key); a finished row without its result, metrics or sweep link; a metric or link
    whose run is gone. On SQLite also PRAGMA integrity_check, in WAL mode."""
    duplicates = query(db, "SELECT kind, run_key, count(*) FROM runs GROUP BY kind, run_key HAVING count(*) > 1")
    assert duplicates == [], f"duplicate runs: {duplicates}"
    half = query(db, "SELECT run_key FROM runs WHERE status = 'finished' AND (result IS NULL "
                      "OR id NOT IN (SELECT run_id FROM metrics) OR id NOT IN (SELECT run_id FROM sweep_runs))")
    assert half == [], f"finished runs without their result, metrics or sweep link: {half}"
    orphans = query(db, "SELECT run_id FROM metrics WHERE run_id NOT IN (SELECT id FROM runs) "
                         "UNION SELECT run_id FROM sweep_runs WHERE run_id NOT IN (SELECT id FROM runs)")
    assert orphans == [], f"metrics or sweep links without their run: {orphans}"
    if not is_postgres(db):
        assert query(db, "PRAGMA integrity_check") == [("ok",)]
        assert query(db, "PRAGMA journal_mode") == [("wal",)]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


