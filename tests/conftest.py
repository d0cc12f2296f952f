"""Shared fixtures: the real GLUE data under ../shared/data/glue, plus fixtures in the exact
upstream format for the files this machine does not have (QQP, QNLI train).

Tests that read ../shared/data say so with `glue_dir` or `@pytest.mark.needs_data("style", ...)`
(folders under it); both go through `require_data`, which skips the test where the folder is
missing, or fails it when TTRLAB_REQUIRE_DATA=1 (CI sets it: there a missing data folder is a
broken setup, not a reason to pass with the data tests skipped)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
GLUE = SHARED_DATA / "glue"

REQUIRE_DATA_ENV = "TTRLAB_REQUIRE_DATA"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
QQP_ROWS = [
    "201359\t303345\t303346\tWhy are African-Americans so beautiful?\tWhy are hispanics so beautiful?\t0",
    "263843\t69383\t380476\tI want to pursue PhD in Computer Science about social network,what is the open problem in social networks?\tI handle social media for a non-profit. Should I start going to social media networking events? Are there any good ones in the bay area?\t0",
    "172974\t266948\t175089\tIs there a reason why we should travel alone?\tWhat are some reasons to travel alone?\t1",
    "15329\t29298\t29299\tWhat is the best way to learn \"algebra\"?\tHow do I learn algebra fast?\t1",
]
QNLI_HEADER = "index\tquestion\tsentence\tlabel"
QNLI_ROWS = [
    "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it and most of the seasons that followed, Digimon Tamers takes a darker and more realistic approach to its story.\tnot_entailment",
    "1\tWhich missile batteries often have individual launchers several kilometres from one another?\tWhen MANPADS is operated by specialists, batteries may have several dozen teams deploying separately in small sections.\tnot_entailment",
    "2\tWhat two things does Popper argue Tarski's theory involves in an evaluation of truth?\tHe bases this interpretation on the fact that examples such as the one described above refer to two things: assertions and the facts to which they refer.\tentailment",
    "3\tWhat is the name of the village 9 miles north of Calafat where the Ottoman forces attacked the Russians?\tOn 31 December 1853, the Ottoman forces at Calafat moved against the Russian force at Chetatea or Cetate, a small village nine miles north of Calafat, and engaged them on 6 January 1854.\tentailment",
]


def _write(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def install_plugin_kind(tmp_path: Path, monkeypatch, module: str, source: str) -> Path:
    """Write a test-only run kind as module `module` into tmp_path and load it through
    TTRLAB_PLUGINS, the way a user adds a kind, so it reaches spawned workers, Ray workers and
    CLI subprocesses too. Returns the folder holding the module."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TTRLAB_PLUGINS", module)
    from ttrlab.kinds.registry import load_plugins

    load_plugins()
    return plugin_dir


KINDS_DIR = Path(__file__).resolve().parent / "kinds"


def install_counting_kind(tmp_path: Path, monkeypatch) -> Path:
    """Load the "counting" kind (tests/kinds/counting_kind.py) through TTRLAB_PLUGINS, here and
    in every process started from here; returns the log its computations go to (see
    `counting_kind.computations`)."""
    log = tmp_path / "computations.log"
    monkeypatch.syspath_prepend(str(KINDS_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(KINDS_DIR), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TTRLAB_PLUGINS", "counting_kind")
    monkeypatch.setenv("TTRLAB_TEST_COUNT_LOG", str(log))
    from ttrlab.kinds.registry import load_plugins

    load_plugins()
    return log


def require_data(path: Path, what: str = "shared data") -> None:
    """Skip the calling test when `path` is not a folder; fail it instead under TTRLAB_REQUIRE_DATA=1."""
    if path.is_dir():
        return
    message = f"{what} not found at {path}"
    if os.environ.get(REQUIRE_DATA_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_DATA_ENV}=1 requires it (CI must not skip the data tests)",
                    pytrace=False)
    pytest.skip(message)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "needs_data(*folders): reads these folders of ../shared/data (see require_data)")


def pytest_runtest_setup(item) -> None:
    for mark in item.iter_markers("needs_data"):
        for folder in mark.args:
            require_data(SHARED_DATA / folder, f"shared {folder} data")


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    """A GLUE folder with the real SST-2/CoLA/RTE/MRPC/QNLI-dev (linked) and self-written
    QQP and QNLI-train fixtures in the upstream layout (with the quotes GLUE really has)."""
    require_data(GLUE, "shared GLUE data")
    root = tmp_path_factory.mktemp("glue")
    for task in ("SST-2", "CoLA", "RTE", "MRPC"):
        (root / task).symlink_to(GLUE / task)
    (root / "QNLI").mkdir()
    (root / "QNLI" / "dev.tsv").symlink_to(GLUE / "QNLI" / "dev.tsv")
    _write(root / "QNLI" / "train.tsv", QNLI_HEADER, QNLI_ROWS)
    _write(root / "QQP" / "train.tsv", QQP_HEADER, QQP_ROWS)
    _write(root / "QQP" / "dev.tsv", QQP_HEADER, QQP_ROWS[:2])
    return root


@pytest.fixture(scope="session")
def minilm():
    """(tokenizer, pretrained template) loaded once for the whole session."""
    from ttrlab.models.loading import load_classifier

    return load_classifier("minilm", 2, seed=0)


# ---- PostgreSQL: a throw-away cluster for the store tests ---------------------------------
# `postgres_cluster` (session) runs initdb + pg_ctl in a temp dir on a free port of 127.0.0.1
# and stops it at the end; `postgres_url` gives a test its own fresh database; `store_db` runs a
# store test once on SQLite and once on PostgreSQL. Where the binaries are missing the Postgres
# tests skip, or fail under TTRLAB_REQUIRE_POSTGRES=1 (CI sets it when it has installed them).

REQUIRE_POSTGRES_ENV = "TTRLAB_REQUIRE_POSTGRES"
POSTGRES_BIN_ENV = "TTRLAB_POSTGRES_BIN"  # a bin folder to use instead of searching


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: $TTRLAB_POSTGRES_BIN when set, else from PATH, else
    the newest /usr/lib/postgresql/*/bin (Debian's packages keep them off PATH)."""
    if os.environ.get(POSTGRES_BIN_ENV):
        given = Path(os.environ[POSTGRES_BIN_ENV])
        return given if (given / "initdb").is_file() and (given / "pg_ctl").is_file() else None
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb).resolve().parent  # through a symlink: `postgres` lies beside the real one
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file() and (p / "pg_ctl").is_file()]
    found.sort(key=lambda p: [int(part) if part.isdigit() else 0 for part in p.parent.name.split(".")])
    return found[-1] if found else None


def require_postgres() -> Path:
    """The bin folder; skip the calling test without one, fail it under TTRLAB_REQUIRE_POSTGRES=1."""
    bin_dir = postgres_bin_dir()
    if bin_dir is not None:
        return bin_dir
    where = os.environ.get(POSTGRES_BIN_ENV) or "on PATH or under /usr/lib/postgresql/*/bin"
    message = f"PostgreSQL server binaries (initdb, pg_ctl) not found {where}"
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_POSTGRES_ENV}=1 requires them (CI must not skip the Postgres tests)",
                    pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresCluster:
    """A running throw-away cluster: superuser `postgres`, trust auth, on 127.0.0.1:port."""
    bin_dir: Path
    root: Path
    port: int

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str) -> None:
        """Run one statement as the superuser outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True, connect_timeout=10) as con:
            con.execute(sql)


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user there."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _stop_cluster(bin_dir: Path, root: Path) -> None:
    data = root / "data"
    if (data / "postmaster.pid").exists():
        stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "30"]
        if subprocess.run(_as_postgres([*stop, "-m", "fast", "stop"]), capture_output=True, timeout=60).returncode:
            subprocess.run(_as_postgres([*stop, "-m", "immediate", "stop"]), capture_output=True, timeout=60)
    shutil.rmtree(root, ignore_errors=True)


def _reap_orphaned_clusters(bin_dir: Path) -> None:
    """Stop and delete the clusters of sessions that died without their teardown (SIGTERM from
    `timeout`, SIGKILL): each cluster folder names the pytest process that owns it."""
    for root in Path(tempfile.gettempdir()).glob("ttrlab-pg-*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # still being set up, or not ours
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            _stop_cluster(bin_dir, root)
        except PermissionError:
            pass  # alive, another user's


@pytest.fixture(scope="session")
def postgres_cluster():
    """Start a PostgreSQL cluster of its own (never the system's "main" cluster on 5432) and
    stop it and delete its folder at the end of the session, after failures too. fsync stays on:
    the tests kill drivers and check what survived."""
    bin_dir = require_postgres()
    _reap_orphaned_clusters(bin_dir)
    root = Path(tempfile.mkdtemp(prefix="ttrlab-pg-"))  # not under pytest's 0700 basetemp: postgres must enter it
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    (root / "owner.pid").write_text(str(os.getpid()))
    if os.geteuid() == 0:
        try:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(sockets, "postgres", "postgres")
        except LookupError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.fail("running as root, the PostgreSQL cluster needs a `postgres` system user to run as "
                        "(Debian's postgresql package creates it)", pytrace=False)
    cluster = None
    try:
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            pytest.fail("running as root, the PostgreSQL cluster needs runuser (util-linux) to run as `postgres`",
                        pytrace=False)
        init = subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]),
                              capture_output=True, text=True, timeout=120)
        if init.returncode:
            pytest.fail(f"initdb failed (exit {init.returncode}): {(init.stderr or init.stdout).strip()[-2000:]}",
                        pytrace=False)
        for _ in range(3):  # the free port can be taken between the probe and the bind
            port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} "
                       "-c max_connections=60 -c shared_buffers=32MB -c max_wal_size=256MB")
            start = subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                                                 "-t", "60", "-o", options, "start"]),
                                   capture_output=True, text=True, timeout=90)
            if start.returncode == 0:
                cluster = PostgresCluster(bin_dir, root, port)
                break
        if cluster is None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else start.stderr
            pytest.fail(f"PostgreSQL did not start (pg_ctl: {start.stderr.strip()}):\n{tail}", pytrace=False)
        yield cluster
    finally:
        _stop_cluster(bin_dir, root)


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """A fresh, empty database of the session's cluster for this test, as a SQLAlchemy URL
    (postgresql+psycopg://postgres@127.0.0.1:PORT/NAME); dropped afterwards, with any
    connections a killed driver left behind."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_cluster.execute(f'CREATE DATABASE "{name}"')
    yield postgres_cluster.url(name)
    postgres_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request, tmp_path) -> str:
    """A results database for a store test, once per backend: an SQLite file path under
    tmp_path (not created yet) or the URL of a fresh PostgreSQL database (`postgres_url`).
    `is_postgres(store_db)` tells a test which one it got."""
    if request.param == "sqlite":
        return str(tmp_path / "r.sqlite")
    return request.getfixturevalue("postgres_url")


def is_postgres(db) -> bool:
    return str(db).startswith("postgresql")
