"""The results database (SQLAlchemy 2): SQLite by default, any SQLAlchemy URL (e.g. Postgres).

Schema
------
- `sweeps`: one row per spec (name + hash of its expanded content), with the YAML as written.
- `runs`: one row per run, unique on (kind, run_key) — the run key hashes the resolved config,
  seed included. Status is "finished" or "failed"; the row carries the config, the full result
  document, timings, versions, host and (for a failed run) the error.
- `metrics`: (run, name, value), the result's metrics flattened (`clean.accuracy`, `asr`, ...).
- `sweep_runs`: which sweeps contain which runs (a run shared by two specs is done once).
- `claims`: the runs some driver is computing right now, unique on (kind, run_key): owner (one
  id per driver process), host, pid, claimed-at and a heartbeat the driver renews while it
  lives. A claim whose heartbeat is older than its lease is expired: its driver is gone, and
  the first other driver to take it over (one compare-and-swap update) recomputes the run.
  Recording a run deletes its claim in the same transaction.
- `ttrlab_meta`: the schema version. A database from before claims (version 1: no such table)
  is migrated on first write (the new tables are added; nothing stored changes); one from a
  newer ttrlab, a foreign database or a file that is not a database is refused with one line
  and never written.

Consistency under SIGKILL
-------------------------
A run's row, its metrics and its sweep link are written in one transaction when the run ends;
nothing is written while it runs. On SQLite the database is in WAL mode with
`synchronous=FULL`, so a process killed at any moment leaves either the whole run or none of it
(a commit either reached the WAL or it did not), never half a row, and the unique key forbids a
duplicate. Re-running the sweep skips finished runs and redoes the others. Write transactions
on SQLite start with `BEGIN IMMEDIATE`, so two drivers queue for the write lock (busy_timeout)
instead of failing when one upgrades a read to a write.

Reading (`ResultStore(db, create=False)`, what reports and `ttrlab status` use) never writes:
SQLite opens read-only, nothing is created or migrated. `runs()` returns typed records
(`StoredRun`: the row, its flat metrics, its result document read through its schema,
`core.result.RunResult`); a record also reads as a mapping of its fields (`run["config"]`), as
the plain dicts it replaced did.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import re
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    cast,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from ttrlab.core.errors import UserError, first_line, shown
from ttrlab.core.io import path_errors, user_path
from ttrlab.core.result import RunResult

FINISHED, FAILED = "finished", "failed"
SCHEMA_VERSION = 2  # 1: sweeps, runs, metrics, sweep_runs; 2: + claims, ttrlab_meta
DEFAULT_LEASE_SECONDS = 120.0
SQLITE_BUSY_SECONDS = 30.0  # how long an SQLite driver waits for another's write lock

# What `claim` found: this driver now holds the run (new, or taken over from a driver whose
# lease expired); it is stored already (finished, or failed and not to be retried); another
# live driver holds it.
CLAIMED, TAKEN_OVER, SETTLED, BUSY = "claimed", "taken over", "settled", "busy"


class Base(DeclarativeBase):
    pass


class Sweep(Base):
    __tablename__ = "sweeps"
    __table_args__ = (UniqueConstraint("name", "spec_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec_sha256: Mapped[str] = mapped_column(String(64))
    spec_text: Mapped[str] = mapped_column(Text, default="")
    spec_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    planned_runs: Mapped[int] = mapped_column(Integer, default=0)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("kind", "run_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    run_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict] = mapped_column(JSON)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime] = mapped_column(DateTime)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    versions: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)

    metrics: Mapped[list[Metric]] = relationship(back_populates="run", cascade="all, delete-orphan")


class Metric(Base):
    __tablename__ = "metrics"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[float] = mapped_column(Float)

    run: Mapped[Run] = relationship(back_populates="metrics")


class SweepRun(Base):
    __tablename__ = "sweep_runs"

    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)


class RunLease(Base):
    """A driver's hold on one run it is computing (`claims.WorkQueue`): who, where, since when, and
    the heartbeat that keeps it. Called a lease, not a claim: a claim is what a paper states
    (`ttrlab.report.claims`); the table keeps its name, `claims`, so databases stay as they are."""

    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("kind", "run_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    run_key: Mapped[str] = mapped_column(String(64))
    sweep_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    label: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime)
    lease_seconds: Mapped[float] = mapped_column(Float)
    takeovers: Mapped[int] = mapped_column(Integer, default=0)

    def expired(self, now: dt.datetime) -> bool:
        return (now - self.heartbeat_at).total_seconds() > self.lease_seconds

    def abandoned(self, now: dt.datetime, host: str) -> bool:
        """Expired, or held by a process of this host that no longer runs (a driver killed a
        moment ago need not be waited for: the same command resumes at once)."""
        return self.expired(now) or (self.host == host and not _process_runs(self.pid))


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


class Meta(Base):
    __tablename__ = "ttrlab_meta"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


METRIC_NAME_LENGTH = Metric.__table__.c.name.type.length
RUN_KEY_LENGTH = Run.__table__.c.run_key.type.length

# The tables (and columns) a ttrlab database of each schema version has; anything else is foreign.
TTRLAB_TABLES_V1 = {"sweeps", "runs", "metrics", "sweep_runs"}
TTRLAB_TABLES = {table.name for table in Base.metadata.sorted_tables}


@dataclass(frozen=True)
class Owner:
    """Who claims runs: one id per driver process, plus where it runs (shown by `ttrlab status`)."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = field(default_factory=platform.node)
    pid: int = field(default_factory=os.getpid)


def database_url(db: str | os.PathLike | URL) -> URL:
    """Where results go, as an SQLAlchemy URL: a value with '://' is an SQLAlchemy URL as the user
    wrote it; anything else is the path of an SQLite file. A path becomes a URL only through
    `URL.create`, never by pasting it into URL text, so '?', '#' and '%' in a file name stay part
    of the name (`res?v2.sqlite` is that file, not `res` with a query)."""
    if isinstance(db, URL):
        return db
    text = os.fspath(db) if isinstance(db, os.PathLike) else str(db)
    if "://" in text:
        try:
            url = make_url(text)
        except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
            raise UserError(f"database URL {redacted(text)!r} is not a valid SQLAlchemy URL "
                            "(e.g. postgresql+psycopg://user@host/db, or give a file path for SQLite)") from None
        if url.drivername in ("postgresql", "postgres"):  # SQLAlchemy's default is psycopg2; ttrlab ships psycopg 3
            url = url.set(drivername="postgresql+psycopg")
        try:
            url.get_dialect()
        except NoSuchModuleError:
            raise UserError(f"database URL {redacted(text)!r}: unknown database kind {url.drivername!r} "
                            "(e.g. sqlite:///path, postgresql+psycopg://user@host/db)") from None
        return url
    path = user_path(text, "database")
    with path_errors("database", path):
        if path.is_dir():
            raise UserError(f"database {text!r} is a directory; give a file path such as results.sqlite")
        if text.endswith(os.sep):  # Path() would drop the slash and make a file of that name
            raise UserError(f"database {text!r} names a folder; give a file path such as results.sqlite")
        if not path.parent.is_dir():
            raise UserError(f"database folder {str(path.parent)!r} does not exist")
        if os.path.lexists(path) and not path.is_file():
            raise UserError(f"database {text!r} is not a regular file (a device, FIFO, socket or a broken link)")
        return URL.create("sqlite", database=str(path.resolve()))


# Query parameters of a database URL whose values are secrets (libpq's password, sslpassword,
# and anything else named like one); their values are never shown.
_SECRET_PARAMETER = re.compile(r"pass|secret|token|credential", re.IGNORECASE)


def redacted(url: str | URL) -> str:
    """The database as a message, the status header and a report may show it: an SQLite file as
    its path; a server URL with every secret hidden (the password of `user:pass@host`, also one
    holding '@'; `password=`, `sslpassword=` and the like in the query); a URL that does not
    parse as its scheme alone."""
    if not isinstance(url, URL):
        text = str(url)
        try:
            url = make_url(text)
        except (ArgumentError, ValueError):
            return f"{text.split('://', 1)[0][:40]}://*** (a URL that does not parse; not shown)"
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    host, hidden = url.host, url.password is not None
    if host and "@" in host:  # a password with an unescaped '@': what precedes the last '@' is secret
        host, hidden = host.rsplit("@", 1)[1], True
    shown_url = url.set(host=host, password="***" if hidden else None, query={})
    text = shown_url.render_as_string(hide_password=True)
    pairs = []
    for key, value in url.query.items():
        for one in value if isinstance(value, tuple) else (value,):
            pairs.append(f"{key}={'***' if _SECRET_PARAMETER.search(key) else one}")
    return text + ("?" + "&".join(pairs) if pairs else "")


def as_given(db: str | os.PathLike | URL) -> str:
    """The database as its user named it, for a page to show: a file path as written (a relative
    path stays relative, so a published report names no folder of the machine that built it;
    `database_url` resolves it to open it), a URL with its secrets hidden (`redacted`)."""
    if isinstance(db, URL):
        return redacted(db)
    text = os.fsdecode(db)
    return redacted(text) if "://" in text else text


def secrets_of(url: str | URL) -> list[str]:
    """The secret strings a database URL holds (to hide them in a driver's error text too)."""
    try:
        url = url if isinstance(url, URL) else make_url(str(url))
    except (ArgumentError, ValueError):
        return []
    found = [url.password] if url.password else []
    if url.host and "@" in url.host:
        found.append(url.host.rsplit("@", 1)[0])
    for key, value in url.query.items():
        if _SECRET_PARAMETER.search(key):
            found.extend(value if isinstance(value, tuple) else (value,))
    return [secret for secret in found if secret]


def without_secrets(text: str, url: str | URL) -> str:
    """`text` (a database driver's error line) with every secret of `url` replaced by ***. A
    secret too short to replace without mangling the words around it (the 'ss' of a password
    'p@ss') hides the whole text instead."""
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        if secret in text and len(secret) < 4:
            return "(the driver's message is not shown: it may hold the password)"
        text = text.replace(secret, "***")
    return text


def flatten_metrics(metrics: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """{"clean": {"accuracy": .9}, "asr": .1, "triggered": None} -> {"clean.accuracy": .9, "asr": .1}.
    Names longer than the metrics table's column, or holding a NUL, are left out on every
    backend alike (the stored result document keeps them)."""
    flat: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, name + "."))
        elif (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and len(name) <= METRIC_NAME_LENGTH and "\x00" not in name):
            flat[name] = float(value)  # a name the metrics table cannot hold stays in the result document only
    return flat


def storable(value: Any) -> Any:
    """`value` as every database can store it: JSON types only (others via str), a non-finite
    float as None (JSON has no NaN; PostgreSQL refuses it), no NUL character in a string
    (PostgreSQL text cannot hold one)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {storable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return storable(str(value))


@dataclass(frozen=True, eq=False)
class StoredRun(Mapping):
    """One stored run as readers get it (`ResultStore.runs`). `result` is the stored document
    read through its schema (`RunResult.from_dict`, schema 1 or 2; where a document lacks its
    kind or run key, the row's), None for a failed run that stored none; `metrics` the flat
    `metrics` table rows (`clean.accuracy`, `asr`, ...).

    It also reads as a read-only mapping of its fields (`run["config"]`, `run.get("result")`,
    `dict(run)`), the plain dicts `runs()` returned before; there `result` is the document as a
    dict (`RunResult.to_dict`)."""

    id: int
    kind: str
    run_key: str
    status: str
    config: dict[str, Any]
    metrics: dict[str, float]
    result: RunResult | None
    error: str | None
    seconds: float | None
    versions: dict[str, Any] | None
    attempts: int
    host: str | None
    finished_at: dt.datetime | None
    sweeps: tuple[str, ...] = ()

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    # ---- the mapping view -----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _RECORD_FIELDS:
            raise KeyError(key)
        if key == "result":
            return None if self.result is None else self.result.to_dict()
        if key == "sweeps":
            return list(self.sweeps)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_RECORD_FIELDS)

    def __len__(self) -> int:
        return len(_RECORD_FIELDS)


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(StoredRun))


def _parsed_row(status: str, config: str | None, result: str | None, seconds: Any,
                versions: str | None) -> dict[str, Any]:
    """A run row's JSON columns (as text) parsed and checked; ValueError saying what is wrong."""
    def parsed(text: str | None, column: str) -> Any:
        try:
            return None if text is None else json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"its {column} is not valid JSON") from None

    document = {"config": parsed(config, "config"), "result": parsed(result, "result"),
                "versions": parsed(versions, "versions")}
    if not isinstance(document["config"], dict):
        raise ValueError(f"its config is {_json_type(document['config'])}, not an object")
    if not isinstance(document["result"], dict) and (status == FINISHED or document["result"] is not None):
        raise ValueError(f"its result is {_json_type(document['result'])}, not an object")
    if document["result"] is not None and not isinstance(document["result"].get("metrics", {}), dict):
        raise ValueError(f"its result's metrics are {_json_type(document['result']['metrics'])}, not an object")
    if document["versions"] is not None and not isinstance(document["versions"], dict):
        raise ValueError(f"its versions are {_json_type(document['versions'])}, not an object")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))):
        raise ValueError("its seconds are not a number")  # SQLite keeps whatever was written
    document["seconds"] = seconds
    return document


def _typed_result(document: dict[str, Any] | None, kind: str, run_key: str) -> RunResult | None:
    """A stored result document read through its schema; the row's kind and run key where the
    document has none (a schema-1 document, or one a plugin kind wrote). ValueError for a
    schema this ttrlab does not read."""
    if document is None:
        return None
    try:
        return RunResult.from_dict({"kind": kind, "run_key": run_key, **document})
    except ValueError as error:
        raise ValueError(f"its result: {error}") from None


def _json_type(value: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def check_stored_text(value: str, column, what: str) -> str:
    """`value` as the database stores it in `column`, on every backend alike: no NUL character
    (PostgreSQL text cannot hold one) and no more characters than the column's length (which
    PostgreSQL enforces and SQLite does not). UserError naming `what` otherwise."""
    if "\x00" in value:
        raise UserError(f"{what} {shown(value)} contains a NUL character, which the database cannot store")
    limit = getattr(column.type, "length", None)
    if limit is not None and len(value) > limit:
        raise UserError(f"{what} {shown(value)} is {len(value)} characters long; the database stores at most {limit}")
    return value


class EmptyDatabase(UserError):
    """A reader opened a database that exists but holds no ttrlab tables yet."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def sqlite_path(url: str | URL) -> Path | None:
    """The file of an SQLite URL (None for a server database or an in-memory one)."""
    if not isinstance(url, URL):
        try:
            url = make_url(str(url))
        except (ArgumentError, ValueError):
            return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _sqlite_reader_url(path: Path, immutable: bool) -> URL:
    """A read-only SQLite URI for `path` (percent-encoded: a URI gives '?', '#', '%' meaning).
    `immutable`: no locks and no -shm file, for read-only storage, where SQLite cannot open a
    WAL database any other way."""
    query = {"mode": "ro", "uri": "true", **({"immutable": "1"} if immutable else {})}
    return URL.create("sqlite", database="file:" + urllib.parse.quote(str(path)), query=query)


def _on_read_only_storage(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY) or not os.access(path.parent, os.W_OK)
    except OSError:
        return False


class ResultStore:
    """Open a results database: `create=True` (a driver) creates it and its tables if needed and
    migrates an older schema; `create=False` (a reader: reports, `ttrlab status`) requires an
    existing ttrlab database and never writes to it. Either way a file that is not a database,
    a foreign database or a newer schema is refused with one line before anything is written."""

    def __init__(self, db: str | os.PathLike | URL, create: bool = True):
        self.url = database_url(db)
        self.writable = create
        self.notes: list[str] = []  # what a reader should tell its user (e.g. read as immutable)
        self.skipped: list[dict[str, Any]] = []  # damaged rows `runs` left out
        path = sqlite_path(self.url)
        if path is not None and not create:
            with path_errors("database", path):
                if not path.is_file():
                    raise UserError(f"database {str(path)!r} does not exist")
        # A reader opens SQLite read-only, so not even a journal-mode change reaches the file.
        self.engine = self._engine(_sqlite_reader_url(path, False) if path is not None and not create else self.url)
        try:
            self.schema_version = self._open_schema()
        except UserError:
            self.engine.dispose()
            raise
        except (OperationalError, DatabaseError) as error:
            self.engine.dispose()
            if path is None or create or not _on_read_only_storage(path):
                raise self._cannot_open(error) from None
            # A WAL database on read-only storage: SQLite cannot make its -shm file there.
            self.engine = self._engine(_sqlite_reader_url(path, True))
            try:
                self.schema_version = self._open_schema()
            except UserError:
                self.engine.dispose()
                raise
            except (OperationalError, DatabaseError) as again:
                self.engine.dispose()
                raise self._cannot_open(again) from None
            wal = path.with_name(path.name + "-wal")
            unread = wal.is_file() and wal.stat().st_size > 0
            self.notes.append(f"database {str(path)!r} is on read-only storage: read as an immutable file"
                              + (f"; runs still in its write-ahead log {wal.name!r} are not seen (copy the database "
                                 "and that file to writable storage to read them)" if unread else ""))
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def _engine(self, url: URL) -> Engine:
        try:
            engine = create_engine(url)
        except ImportError as error:  # the URL names a database whose Python driver is not installed
            raise UserError(f"database URL {redacted(self.url)!r} needs a driver that is not installed "
                            f"({error.name or error}); for PostgreSQL: pip install 'ttrlab[postgres]'") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_connection)
            event.listen(engine, "begin", _sqlite_begin_immediate if self.writable else _sqlite_begin)
        return engine

    def _cannot_open(self, error: Exception) -> UserError:
        detail = first_line(getattr(error, "orig", None) or error)
        return UserError(f"cannot open database {redacted(self.url)!r}: {without_secrets(detail, self.url)}")

    def _open_schema(self) -> int:
        """Check what the database holds; for a driver, create or migrate it. Returns the
        schema version it now has."""
        where = redacted(self.url)
        tables = set(inspect(self.engine).get_table_names())
        if not tables:
            if not self.writable:
                raise EmptyDatabase(f"database {where!r} holds no ttrlab results (it has no tables)")
            return self._create_tables()
        if not TTRLAB_TABLES_V1 <= tables:
            shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
            raise UserError(f"database {where!r} is not a ttrlab results database (it holds tables {shown}); "
                            "ttrlab leaves it as it is: give another --db")
        columns = {column["name"] for column in inspect(self.engine).get_columns("runs")}
        missing = set(Run.__table__.columns.keys()) - columns
        if missing:
            raise UserError(f"database {where!r} is not a ttrlab results database (its runs table lacks "
                            f"{', '.join(sorted(missing))}); ttrlab leaves it as it is: give another --db")
        version = 1
        if Meta.__tablename__ in tables:
            with self.engine.connect() as connection:
                value = connection.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar()
            version = int(value) if value is not None and str(value).isdigit() else 1
        if version > SCHEMA_VERSION:
            raise UserError(f"database {where!r} was written by a newer ttrlab (schema {version}; this ttrlab "
                            f"knows schemas up to {SCHEMA_VERSION}): upgrade ttrlab to use it")
        if version < SCHEMA_VERSION and self.writable:
            return self._create_tables()  # 1 -> 2 adds claims and ttrlab_meta; stored rows are untouched
        if self.writable:
            self._wal()
        return version

    def _create_tables(self) -> int:
        """Create the tables this schema lacks (all, for a new database) and stamp the version.
        Two drivers creating a new database at once: the loser's CREATE fails, and the tables
        the winner made are what it wanted."""
        try:
            Base.metadata.create_all(self.engine)
        except (OperationalError, IntegrityError, DatabaseError):
            if not TTRLAB_TABLES <= set(inspect(self.engine).get_table_names()):
                raise
        try:
            with self.engine.begin() as connection:
                if connection.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar() is None:
                    connection.execute(Meta.__table__.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                else:
                    connection.execute(update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION)))
        except IntegrityError:
            pass  # another driver stamped it at the same moment
        self._wal()
        return SCHEMA_VERSION

    def _wal(self) -> None:
        """SQLite only, and only once the file is known to be ttrlab's: WAL is a property of
        the file (it rewrites the header), so a foreign file must never get it."""
        if self.engine.dialect.name != "sqlite":
            return
        # Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
        # locked" at once (no busy wait) while another driver that started at the same moment
        # holds any lock: retry for as long as a write would wait.
        deadline = time.monotonic() + SQLITE_BUSY_SECONDS
        while True:
            connection = self.engine.raw_connection()  # outside any transaction, as SQLite needs
            try:
                connection.driver_connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise self._cannot_open(error) from None
            finally:
                connection.close()
            time.sleep(0.05)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session() as session, session.begin():
            yield session

    # ---- sweeps ---------------------------------------------------------------------------
    def register_sweep(self, name: str, spec_sha256: str, spec_text: str = "", spec_path: str | None = None,
                       planned_runs: int = 0) -> int:
        """The id of the sweep (name, spec hash), inserted if new: one atomic insert-or-get, so
        drivers started together on a new database all get the one row (the loser of the race
        for the unique key rolls back only its savepoint and reads the winner's row)."""
        check_stored_text(name, Sweep.__table__.c.name, "sweep name")
        with self.session() as s:
            sweep = s.scalar(select(Sweep).where(Sweep.name == name, Sweep.spec_sha256 == spec_sha256))
            if sweep is None:
                try:
                    with s.begin_nested():
                        s.add(Sweep(name=name, spec_sha256=spec_sha256, spec_text=storable(spec_text),
                                    spec_path=storable(spec_path), created_at=_now(), planned_runs=planned_runs))
                except IntegrityError:
                    pass  # another driver registered it a moment ago
                sweep = s.scalar(select(Sweep).where(Sweep.name == name, Sweep.spec_sha256 == spec_sha256))
            sweep.planned_runs = planned_runs
            s.flush()
            return sweep.id

    def sweeps(self) -> list[Sweep]:
        with self.session() as s:
            return list(s.scalars(select(Sweep).order_by(Sweep.id)))

    # ---- runs -----------------------------------------------------------------------------
    def statuses(self, kind: str, run_keys: Iterable[str]) -> dict[str, str]:
        """{run_key: status} for the keys the database holds."""
        keys = list(run_keys)
        found: dict[str, str] = {}
        with self.session() as s:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = s.execute(select(Run.run_key, Run.status).where(Run.kind == kind, Run.run_key.in_(chunk)))
                found.update({key: status for key, status in rows})
        return found

    def link(self, sweep_id: int, kind: str, run_keys: Iterable[str]) -> None:
        """Record that finished runs already in the database belong to this sweep too."""
        keys = list(run_keys)
        with self.session() as s:
            for start in range(0, len(keys), 500):
                ids = s.scalars(select(Run.id).where(Run.kind == kind, Run.run_key.in_(keys[start : start + 500])))
                _link_runs(s, sweep_id, list(ids))

    def record(self, *, sweep_id: int | None, kind: str, run_key: str, config: dict[str, Any],
               result: dict[str, Any] | None = None, error: str | None = None,
               started_at: dt.datetime | None = None, seconds: float | None = None,
               host: str | None = None, owner: Owner | None = None) -> int:
        """Write one finished (result given) or failed (error given) run — row, metrics and
        sweep link — in a single transaction, and drop `owner`'s claim on it in the same one.
        A failed row is replaced when the run is redone; a finished one is never replaced (the
        first result stays). Two processes recording the same new run at once: the second
        one's insert hits the unique key, and its retry finds the first one's row."""
        if (result is None) == (error is None):
            raise ValueError("record() needs exactly one of result and error")
        status = FINISHED if result is not None else FAILED
        metrics = flatten_metrics(result.get("metrics")) if result is not None else {}
        versions = result.get("versions") if result is not None else None
        result, config, error = storable(result), storable(config), storable(error)
        for attempt in range(2):
            try:
                with self.session() as s:
                    if owner is not None:
                        s.execute(delete(RunLease).where(RunLease.kind == kind, RunLease.run_key == run_key,
                                                         RunLease.owner == owner.id))
                    run = s.scalar(select(Run).where(Run.kind == kind, Run.run_key == run_key))
                    if run is not None and run.status == FINISHED:
                        if sweep_id is not None:
                            _link_runs(s, sweep_id, [run.id])
                        return run.id  # someone finished it already: keep the first result
                    if run is None:
                        run = Run(kind=kind, run_key=run_key, attempts=0)
                        s.add(run)
                    run.status, run.config, run.result, run.error = status, config, result, error
                    run.started_at, run.finished_at, run.seconds = started_at, _now(), seconds
                    run.attempts = (run.attempts or 0) + 1
                    run.versions, run.host = versions, host or platform.node()
                    run.metrics = [Metric(name=name, value=value) for name, value in metrics.items()]
                    s.flush()
                    if sweep_id is not None:
                        _link_runs(s, sweep_id, [run.id])
                    return run.id
            except IntegrityError:
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    # ---- claims ---------------------------------------------------------------------------
    def claim(self, kind: str, runs: Iterable[tuple[str, str]], owner: Owner, *, sweep_id: int | None = None,
              lease: float = DEFAULT_LEASE_SECONDS, retry_failed: bool = False) -> dict[str, str]:
        """Try to claim each (run_key, label) for `owner`, in one transaction: {run_key: CLAIMED,
        TAKEN_OVER (claimed from a driver whose lease expired, or which ran on this host and
        runs no more: hosts are told apart by name, so give machines distinct names), SETTLED
        (stored already: finished, or failed and `retry_failed` is off) or BUSY (a live driver
        holds it)}. A takeover is a compare-and-swap on the old owner and heartbeat, so of
        several drivers taking over the same expired claim exactly one succeeds."""
        runs = list(runs)
        outcome: dict[str, str] = {}
        now = _now()
        with self.session() as s:
            keys = [key for key, _ in runs]
            # Claims before runs: a driver's `record` drops its claim and adds the run in one
            # commit, so under READ COMMITTED (PostgreSQL) a claim gone from the first read is
            # a run present in the second.
            held = {c.run_key: c for c in s.scalars(select(RunLease).where(RunLease.kind == kind,
                                                                            RunLease.run_key.in_(keys)))}
            stored = dict(s.execute(select(Run.run_key, Run.status).where(Run.kind == kind, Run.run_key.in_(keys))).all())
            for key, label in runs:
                if stored.get(key) == FINISHED or (stored.get(key) == FAILED and not retry_failed):
                    outcome[key] = SETTLED
                    continue
                fresh = dict(owner=owner.id, host=owner.host, pid=owner.pid, claimed_at=now, heartbeat_at=now,
                             lease_seconds=lease, label=label, sweep_id=sweep_id)
                existing = held.get(key)
                if existing is None:
                    try:
                        with s.begin_nested():
                            s.add(RunLease(kind=kind, run_key=key, takeovers=0, **fresh))
                        outcome[key] = CLAIMED
                    except IntegrityError:  # another driver claimed it a moment ago
                        outcome[key] = BUSY
                elif existing.owner == owner.id:
                    outcome[key] = CLAIMED
                elif not existing.abandoned(now, owner.host):
                    outcome[key] = BUSY
                else:
                    swapped = s.execute(
                        update(RunLease)
                        .where(RunLease.id == existing.id, RunLease.owner == existing.owner,
                               RunLease.heartbeat_at == existing.heartbeat_at)
                        .values(takeovers=existing.takeovers + 1, **fresh)
                        .execution_options(synchronize_session=False)
                    ).rowcount
                    outcome[key] = TAKEN_OVER if swapped == 1 else BUSY
            # A driver may have stored a run between the reads above and our claim landing
            # (on SQLite the write lock, held since BEGIN IMMEDIATE, rules it out; on
            # PostgreSQL it does not): look again.
            ours = [key for key, found in outcome.items() if found in (CLAIMED, TAKEN_OVER)]
            if ours and self.engine.dialect.name != "sqlite":
                done = set(s.scalars(select(Run.run_key).where(Run.kind == kind, Run.run_key.in_(ours),
                                                               Run.status == FINISHED)))
                if done:
                    s.execute(delete(RunLease).where(RunLease.kind == kind, RunLease.run_key.in_(list(done)),
                                                     RunLease.owner == owner.id)
                              .execution_options(synchronize_session=False))
                    outcome.update({key: SETTLED for key in done})
        return outcome

    def heartbeat(self, owner: Owner) -> int:
        """Renew the lease of every claim `owner` holds; returns how many it holds."""
        with self.session() as s:
            return s.execute(update(RunLease).where(RunLease.owner == owner.id).values(heartbeat_at=_now())
                             .execution_options(synchronize_session=False)).rowcount

    def release(self, owner: Owner, kind: str | None = None, run_keys: Iterable[str] | None = None) -> int:
        """Drop `owner`'s claims (those on `run_keys` of `kind`, or all): its runs become free
        for any driver at once instead of after the lease."""
        query = delete(RunLease).where(RunLease.owner == owner.id)
        if run_keys is not None:
            query = query.where(RunLease.kind == kind, RunLease.run_key.in_(list(run_keys)))
        with self.session() as s:
            return s.execute(query.execution_options(synchronize_session=False)).rowcount

    def claims(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The claims held now, oldest first, each with `expired` and its age in seconds (none
        in a schema-1 database a reader opened: it has no claims table)."""
        if self.schema_version < 2:
            return []
        now = _now()
        with self.session() as s:
            query = select(RunLease).order_by(RunLease.claimed_at)
            if kind is not None:
                query = query.where(RunLease.kind == kind)
            rows = list(s.scalars(query))
        return [{"kind": c.kind, "run_key": c.run_key, "sweep_id": c.sweep_id, "label": c.label, "owner": c.owner,
                 "host": c.host, "pid": c.pid, "claimed_at": c.claimed_at, "heartbeat_at": c.heartbeat_at,
                 "lease_seconds": c.lease_seconds, "takeovers": c.takeovers, "expired": c.expired(now),
                 "running_seconds": (now - c.claimed_at).total_seconds(),
                 "heartbeat_age": (now - c.heartbeat_at).total_seconds()} for c in rows]

    def runs(self, status: str | None = FINISHED, kind: str | None = None) -> list[StoredRun]:
        """The stored runs of `status` (None: all) and `kind` (None: all), in the order stored,
        as typed records (`StoredRun`). A row that is not what ttrlab writes (a config or result
        that is not a JSON object, a result of a schema this ttrlab does not read, a time that is
        not a number: edited by hand, or damaged) is left out and named in `skipped` (id, kind,
        run key, what is wrong)."""
        chosen = [clause for clause in (Run.status == status if status is not None else None,
                                        Run.kind == kind if kind is not None else None) if clause is not None]
        # The JSON columns come as text and are parsed here, row by row: one damaged row must
        # not make every other row unreadable.
        columns = (Run.id, Run.kind, Run.run_key, Run.status, cast(Run.config, Text), cast(Run.result, Text), Run.error,
                   Run.seconds, cast(Run.versions, Text), Run.attempts, Run.host, Run.finished_at)
        with self.session() as s:
            rows = s.execute(select(*columns).where(*chosen).order_by(Run.id)).all()
            # only the chosen runs' metrics and links (a join on the same filter, not every row)
            metric_rows = s.execute(select(Metric.run_id, Metric.name, Metric.value)
                                    .join(Run, Run.id == Metric.run_id).where(*chosen)).all() if rows else []
            link_rows = s.execute(select(SweepRun.run_id, Sweep.name).join(Sweep, Sweep.id == SweepRun.sweep_id)
                                  .join(Run, Run.id == SweepRun.run_id).where(*chosen)).all() if rows else []
        metrics: dict[int, dict[str, float]] = {}
        for run_id, name, value in metric_rows:
            metrics.setdefault(run_id, {})[name] = value
        sweeps: dict[int, list[str]] = {}
        for run_id, name in link_rows:
            sweeps.setdefault(run_id, []).append(name)
        runs = []
        for run_id, run_kind, run_key, run_status, config, result, error, seconds, versions, attempts, host, finished \
                in rows:
            try:
                parsed = _parsed_row(run_status, config, result, seconds, versions)
                document = _typed_result(parsed["result"], run_kind, run_key)
            except ValueError as problem:
                self.skipped.append({"id": run_id, "kind": run_kind, "run_key": run_key, "problem": str(problem)})
                continue
            runs.append(StoredRun(
                id=run_id, kind=run_kind, run_key=run_key, status=run_status, config=parsed["config"],
                metrics=metrics.get(run_id, {}), result=document, error=error, seconds=parsed["seconds"],
                versions=parsed["versions"], attempts=attempts, host=host, finished_at=finished,
                sweeps=tuple(sorted(sweeps.get(run_id, []))),
            ))
        return runs

    def counts(self) -> dict[str, int]:
        """{status: number of runs}."""
        with self.session() as s:
            return dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all())


def _link_runs(session: Session, sweep_id: int, run_ids: list[int]) -> None:
    """Link runs to a sweep in one statement that ignores links already there: two drivers may
    link the same run at once (one records it, the other counts it as stored elsewhere), and a
    read-then-insert would let the second fail on the primary key."""
    if not run_ids:
        return
    rows = [{"sweep_id": sweep_id, "run_id": run_id} for run_id in run_ids]
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        session.execute(insert(SweepRun).values(rows).on_conflict_do_nothing())
        return
    for row in rows:  # another database: one savepoint per link
        try:
            with session.begin_nested():
                session.execute(SweepRun.__table__.insert().values(**row))
        except IntegrityError:
            pass


def _sqlite_connection(dbapi_connection, _record) -> None:
    """Per-connection settings (none of them writes to the file). The driver's own transaction
    handling is off: each transaction's BEGIN comes from the "begin" listener below."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    cursor.close()


def _sqlite_begin_immediate(connection) -> None:
    # A driver's transactions take the write lock at once: a deferred one that reads and then
    # writes fails with "database is locked" (no waiting) when another driver wrote in between.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin(connection) -> None:
    connection.exec_driver_sql("BEGIN")
