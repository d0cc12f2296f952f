"""Under CI (TTRLAB_REQUIRE_DATA=1) a test that needs ../shared/data fails when the data is
missing, instead of passing as skipped: a tiny pytest session in a subprocess, with the real
conftest.py copied into a folder whose ../shared/data does not exist. The same for the PostgreSQL
tests under TTRLAB_REQUIRE_POSTGRES=1 when the server binaries are missing."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

DATA_TESTS = textwrap.dedent('''
    import pytest

    def test_reads_glue(glue_dir):
        assert glue_dir.is_dir()

    @pytest.mark.needs_data("style")
    def test_reads_style():
        pass

    def test_without_data():
        pass
''')


def _session(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    tests = tmp_path / "repo" / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    shutil.copy(TESTS / "conftest.py", tests / "conftest.py")
    (tests / "test_data_needed.py").write_text(DATA_TESTS)
    assert not (tmp_path / "shared" / "data").exists()  # what the copied conftest looks for
    env = {k: v for k, v in os.environ.items() if k != "TTRLAB_REQUIRE_DATA"}
    if require is not None:
        env["TTRLAB_REQUIRE_DATA"] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tests)],
                          cwd=tmp_path / "repo", env=env, capture_output=True, text=True, timeout=120)


def test_missing_data_fails_when_required(tmp_path):
    out = _session(tmp_path, "1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 passed, 2 errors" in out.stdout
    missing = tmp_path / "shared" / "data"
    assert (f"shared GLUE data not found at {missing / 'glue'}, and TTRLAB_REQUIRE_DATA=1 requires it"
            in out.stdout)
    assert f"shared style data not found at {missing / 'style'}" in out.stdout


@pytest.mark.parametrize("require", [None, "0"])
def test_missing_data_skips_otherwise(tmp_path, require):
    out = _session(tmp_path, require)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 2 skipped" in out.stdout
    assert "shared GLUE data not found at" in out.stdout


POSTGRES_TESTS = textwrap.dedent('''
    def test_on_postgres(postgres_url):
        pass

    def test_on_both(store_db):
        pass
''')


def _postgres_session(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    """A session whose Postgres binaries are missing (TTRLAB_POSTGRES_BIN names an empty folder)."""
    tests = tmp_path / "repo" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(TESTS / "conftest.py", tests / "conftest.py")
    (tests / "test_postgres_needed.py").write_text(POSTGRES_TESTS)
    (tmp_path / "no-bin").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TTRLAB_REQUIRE_POSTGRES"}
    env["TTRLAB_POSTGRES_BIN"] = str(tmp_path / "no-bin")
    if require is not None:
        env["TTRLAB_REQUIRE_POSTGRES"] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tests)],
                          cwd=tmp_path / "repo", env=env, capture_output=True, text=True, timeout=120)


def test_missing_postgres_fails_when_required(tmp_path):
    out = _postgres_session(tmp_path, "1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 passed, 2 errors" in out.stdout  # store_db[sqlite] runs; both Postgres tests error
    assert (f"PostgreSQL server binaries (initdb, pg_ctl) not found {tmp_path / 'no-bin'}, "
            "and TTRLAB_REQUIRE_POSTGRES=1 requires them") in out.stdout


def test_missing_postgres_skips_otherwise(tmp_path):
    out = _postgres_session(tmp_path, None)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 2 skipped" in out.stdout
