"""Property-based fuzzing of the user-facing boundary (hypothesis, derandomized: the same
examples every run).

(a) random YAML structures and values go to the sweep spec parser, as text and as a mapping:
    each is a `UserError` with a one-line message or a valid plan, never another exception;
(b) random flag values go to `ttrlab train` and `ttrlab gen-train`, run in-process through the
    CLI up to the point where the run would load its model and train (`run_document` is
    replaced): each is exit 2 with one line on stderr, or a valid config;
(c) hostile strings in every user-supplied field a report shows (spec names and text, task
    names, attack options, models) come out escaped in the HTML;
(d) random path strings (odd characters, long names, NUL bytes, devices, FIFOs, symlinks and
    their loops, folders holding a user's files, read-only storage) go to every path option of
    the commands: each is a valid result on the named path or one line with exit 2, and nothing
    outside the named output changes;
(e) random task files (columns, cell types, encodings, formats) go to `ttrlab train --task`:
    each is valid data (text in every text cell, two classes at least) or one line with exit 2,
    and no message holds a secret planted in the data.
"""
from __future__ import annotations

import math
import re

import pytest
import yaml
from markupsafe import escape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_bad_input import write_glue
from ttrlab.cli import main
from ttrlab.core.errors import UserError
from ttrlab.sweep.spec import load_spec

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ---- (a) sweep specs ------------------------------------------------------------------------------
SPEC_KEYS = ["name", "description", "kind", "figures", "base", "seeds", "resources", "grids", "axes", "include",
             "exclude", "expected_wall_time", "bogus"]
CONFIG_KEYS = ["task", "method", "rank", "alpha", "rate", "attack", "lr", "max_steps", "train_size", "eval_size",
               "max_length", "seed", "weight_decay", "attack_options", "trigger", "target_label", "init_scale",
               "curve_every", "curve_size", "quantity", "fan_in", "device", "precision", "n_clean", "nope"]
NAMES = ["sst2", "lora", "ff", "bpa", "upa", "mt", "none", "train", "theory", "generative", "minilm", "cpu", "auto",
         "spectrum", "<script>", "{{x}}", "", "caf\u00e9", "a\nb"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.integers(min_value=-3, max_value=600),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.1, 0.5, 1.0, 1e-3]),
    st.sampled_from(NAMES), st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=6)), inner, max_size=4)),
    max_leaves=12)
config_maps = st.dictionaries(st.sampled_from(CONFIG_KEYS), values, max_size=5)
axes = st.dictionaries(st.sampled_from(CONFIG_KEYS), st.one_of(st.lists(scalars, max_size=4), values), max_size=3)
grids = st.fixed_dictionaries({}, optional={"name": values, "base": st.one_of(config_maps, values), "axes": axes,
                                            "include": st.lists(config_maps, max_size=2), "exclude": st.lists(config_maps, max_size=2),
                                            "seeds": values})
specs = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(NAMES), values), "kind": st.one_of(st.sampled_from(["train", "theory", "nope"]), values),
    "base": st.one_of(config_maps, values), "seeds": st.one_of(st.lists(st.integers(-1, 5), max_size=3), values),
    "resources": st.one_of(st.dictionaries(st.sampled_from(["cpus", "gpus", "threads", "memory_gb", "x"]), scalars, max_size=3), values),
    "axes": axes, "include": st.one_of(st.lists(config_maps, max_size=2), values), "exclude": st.lists(config_maps, max_size=2),
    "grids": st.one_of(st.lists(grids, max_size=2), values), "figures": values, "description": values,
    "bogus": values,
})


def _plan_or_user_error(source) -> None:
    try:
        spec = load_spec(source)
    except UserError as error:
        message = str(error)
        assert message and "\n" not in message, repr(message)
        assert len(message) < 2000, message[:200]
        return
    expansion = spec.expand()
    assert len(expansion.runs) >= 1 and expansion.points >= len(expansion.runs)
    for run in expansion.runs:
        assert run.config_dict and len(run.run_key) == 24


@FUZZ
@given(spec=specs)
def test_spec_mapping_is_a_plan_or_one_line_error(spec):
    _plan_or_user_error(spec)


YAML_SNIPPETS = ["&a [1, 2]", "*a", "!!python/object:os.system x", "[unclosed", "{a: 1", "'quote", "\t- tab",
                 "? [a, b]\n: 1", "%TAG ! x", "---\n---", "\xff", "0x1F", "1e400", ".nan", "-.inf", "~", "2020-01-01",
                 "!!binary aGk=", "<<: {a: 1}", "[" * 60, "- - - - -", "{rate: [0.1, .inf]}"]


@FUZZ
@given(spec=specs, cut=st.integers(min_value=0, max_value=400), snippet=st.sampled_from(YAML_SNIPPETS),
       key=st.sampled_from(SPEC_KEYS))
def test_spec_text_is_a_plan_or_one_line_error(tmp_path_factory, spec, cut, snippet, key):
    """The YAML of a random spec, cut short or with a hostile snippet as one key's value."""
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    variants = [text[:cut], f"{text}{key}: {snippet}\n", text.replace(": ", f": {snippet} ", 1)]
    folder = tmp_path_factory.mktemp("specs", numbered=True)
    for i, variant in enumerate(variants):
        path = folder / f"s{i}.yaml"
        path.write_bytes(variant.encode("utf-8", "surrogatepass"))
        _plan_or_user_error(path)


# ---- (b) flags of `ttrlab train` and `ttrlab gen-train` -----------------------------------------------
class Validated(Exception):
    """The config passed every check and its data loaded: the run would now load the model."""


@pytest.fixture(scope="module")
def tiny_glue(tmp_path_factory):
    return str(write_glue(tmp_path_factory.mktemp("fuzz_glue")))


@pytest.fixture
def stop_before_the_model(monkeypatch):
    import ttrlab.kinds.pipeline

    def validated(experiment, config, **options):
        config.validate()  # what the run itself checks first
        raise Validated(config)

    monkeypatch.setattr(ttrlab.kinds.pipeline, "run_document", validated)


numbers = st.one_of(
    st.integers(min_value=-5, max_value=1000).map(str), st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["nan", "inf", "-inf", "1e400", "0", "-0",
                                                                               "0.5", "1", "1e-3", "abc", "", "0x10", "1_0"]),
)
texts = st.one_of(st.sampled_from(NAMES + ["query,value", "all-linear", ",", "hub", "local", "end", "middle", "fp16",
                                           "cuda:7", "paper", "gaussian"]), st.text(max_size=10))
TRAIN_FLAGS = {
    "--rank": numbers, "--alpha": numbers, "--lr": numbers, "--rate": numbers, "--weight-decay": numbers,
    "--warmup-ratio": numbers, "--max-grad-norm": numbers, "--lora-dropout": numbers, "--init-scale": numbers,
    "--max-length": numbers, "--eval-size": numbers, "--train-size": numbers, "--batch-size": numbers,
    "--max-steps": numbers, "--seed": numbers, "--target-label": numbers, "--curve-every": numbers,
    "--curve-size": numbers, "--eval-batch-size": numbers,
    "--task": texts, "--method": texts, "--attack": texts, "--init": texts, "--lr-preset": texts, "--device": texts,
    "--precision": texts, "--trigger": texts, "--trigger-position": texts, "--target-modules": texts,
    "--data-source": texts,
    "--attack-option": st.one_of(
        st.tuples(st.sampled_from(["triggers", "negative_ratio", "instruction", "style", "max_new_tokens", "x", ""]),
                  st.one_of(texts, numbers, st.sampled_from(YAML_SNIPPETS))).map(lambda kv: f"{kv[0]}={kv[1]}"),
        texts),
}
GEN_FLAGS = {name: TRAIN_FLAGS[name] for name in ("--rank", "--alpha", "--lr", "--rate", "--seed", "--max-length",
                                                  "--max-steps", "--batch-size", "--method", "--attack", "--task")}
GEN_FLAGS.update({"--n-clean": numbers, "--n-eval": numbers, "--align-steps": numbers, "--align-lr": numbers,
                  "--max-new-tokens": numbers, "--judge": texts, "--baseline-prompts": texts, "--eval-attack": texts,
                  "--n-utility": numbers, "--n-utility-generate": numbers})


def _flags(table):
    return st.lists(st.sampled_from(sorted(table)).flatmap(lambda flag: table[flag].map(lambda value: (flag, value))),
                    min_size=1, max_size=4)


def _one_line_or_valid(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own rejections
        code = exit_.code
    except Validated as valid:
        config = valid.args[0]
        for name, value in config.to_dict().items():  # a valid config holds no nan, inf or 2**70
            assert not (isinstance(value, float) and not math.isfinite(value)), (name, value)
        capsys.readouterr()
        return "valid"
    err = capsys.readouterr().err.strip()
    assert code == 2, f"{argv}: exit {code}: {err[-500:]}"
    assert len(err.splitlines()) == 1 and err.startswith("ttrlab"), f"{argv}: {err[-800:]}"
    return "error"


@FUZZ
@given(flags=_flags(TRAIN_FLAGS))
def test_train_flags_are_valid_or_one_line_errors(capsys, tiny_glue, stop_before_the_model, flags):
    argv = ["train", "--data-dir", tiny_glue, "--quiet"]
    for flag, value in flags:
        argv += [f"{flag}={value}"]  # `=`: a value that starts with '-' stays the flag's value
    _one_line_or_valid(capsys, argv)


@settings(FUZZ, max_examples=60)
@given(flags=_flags(GEN_FLAGS))
def test_gen_train_flags_are_valid_or_one_line_errors(capsys, stop_before_the_model, flags):
    argv = ["gen-train", "--quiet"]
    for flag, value in flags:
        argv += [f"{flag}={value}"]
    _one_line_or_valid(capsys, argv)


# ---- (c) hostile strings in a report ------------------------------------------------------------------
HOSTILE = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>", "{{ 7*7 }}", "{% raw %}", "'; DROP TABLE runs; --",
           "</textarea><svg onload=alert(3)>", "&amp;lt;"]


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(evil=st.sampled_from(HOSTILE), where=st.sampled_from(["sweep", "task", "attack_option", "model", "spec_text"]))
def test_report_escapes_hostile_strings(tmp_path_factory, evil, where):
    from test_report_build import grid, make_db
    from ttrlab.report import build_report
    from ttrlab.sweep.store import ResultStore

    folder = tmp_path_factory.mktemp("report", numbered=True)
    configs = grid(seeds=(0, 1), method="ff", attack="upa", rate=0.1) + grid(seeds=(0, 1), method="lora", attack="upa", rate=0.1)
    db = make_db(folder / "r.sqlite", configs, sweep_name=f"sweep {evil}" if where == "sweep" else "sweep",
                 spec_text=f"name: x\ndescription: {evil}\n" if where == "spec_text" else "name: x\n")
    if where in ("task", "attack_option", "model"):
        with ResultStore(db) as store:
            for i, config in enumerate(configs):
                bad = config.to_dict()
                if where == "task":
                    bad["task"] = evil
                elif where == "model":
                    bad["model"] = evil
                else:
                    bad["attack_options"] = {evil: evil}
                store.record(sweep_id=None, kind="train", run_key=f"{i:024d}", config=bad,
                             result={"metrics": {"clean": {"accuracy": 0.5 + i / 100}}, "versions": {"ttrlab": evil}})
    html = build_report(db, folder / "out").read_text(encoding="utf-8")
    if any(c in evil for c in "<>&\"'"):
        assert evil not in html, f"{where}: {evil!r} unescaped"
    own = re.sub(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]*"', "", html)  # the report's own figures
    assert not re.search(r"<(script|img|svg|textarea)\b", own, re.I), f"{where}: {evil!r} made a tag"
    assert str(escape(evil)) in html or str(escape(evil)).replace("&#34;", "\\&#34;") in html, f"{where}: {evil!r} not shown"


# ---- (d) paths: every path option, random path strings ----------------------------------------------
class Trained(Exception):
    pass


@pytest.fixture(scope="module")
def path_sandbox(tmp_path_factory):
    """A folder of things a path may name: {placeholder: path}, and a read-only mount where
    this machine allows one (else a plain folder stands in)."""
    import os
    import subprocess

    from test_io_boundaries import _device
    from test_report_build import grid, make_db

    root = tmp_path_factory.mktemp("paths")
    found = {"glue": str(write_glue(root / "glue"))}
    (root / "file.json").write_text('{"user": 1}\n')
    os.symlink(root / "file.json", root / "link")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.mkfifo(root / "fifo")
    found["device"] = str(root / "dev") if _device(root / "dev") else str(root / "fifo")
    (root / "mine").mkdir()
    (root / "mine" / "README.md").write_text("mine\n")
    (root / "spec.yaml").write_text("name: fuzz\nkind: counting\naxes: {x: [1]}\n")
    found["db"] = str(make_db(root / "r.sqlite", grid(seeds=(0, 1), method="ff", attack="upa", rate=0.1)
                              + grid(seeds=(0, 1), method="lora", attack="upa", rate=0.1)))
    import sqlite3

    with sqlite3.connect(found["db"]) as con:
        con.execute("PRAGMA journal_mode=DELETE")
    (root / "ro").mkdir()
    (root / "ro" / "inside.json").write_text("{}\n")
    mounted = subprocess.run(["mount", "--bind", str(root / "ro"), str(root / "ro")], capture_output=True).returncode == 0
    if mounted:
        mounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(root / "ro")], capture_output=True).returncode == 0
    found.update(root=str(root), file=str(root / "file.json"), link=str(root / "link"), loop=str(root / "loop1"),
                 fifo=str(root / "fifo"), mine=str(root / "mine"), ro=str(root / "ro"), spec=str(root / "spec.yaml"))
    yield found
    if mounted:
        subprocess.run(["umount", "-l", str(root / "ro")], capture_output=True)


PATH_PIECES = ["x", "res?v2", "a%41", "run#1", " ", "caf\u00e9", "\n", "*", "..", ".", "-", "=1", "<b>", "'", '"', "~",
               "$HOME", "a" * 120, "b" * 300, "\x00", "sub/", ".json", ".sqlite", ".png", ".xyz", "/"]
SPECIAL_PATHS = ["{device}", "{fifo}", "{link}", "{loop}", "{loop}/x", "{ro}", "{ro}/new.json", "{ro}/inside.json",
                 "{mine}", "{mine}/README.md", "{file}", "{root}", "{root}/new_dir/", "{root}/fresh.json",
                 "{root}/fresh.png", "{root}/fresh.sqlite", "{glue}"]
paths = st.one_of(st.sampled_from(SPECIAL_PATHS),
                  st.lists(st.sampled_from(PATH_PIECES), min_size=1, max_size=4).map("".join))
# option -> (argv with {p}; what the path is: "file" or "folder" output, or "input" (read only))
PATH_COMMANDS = {
    "train --out": (["train", "--data-dir", "{glue}", "--quiet", "--out", "{p}"], "file"),
    "train --save-adapter": (["train", "--data-dir", "{glue}", "--quiet", "--method", "lora", "--save-adapter", "{p}"],
                             "folder"),
    "train --data-dir": (["train", "--data-dir", "{p}", "--quiet"], "input"),
    "train --task": (["train", "--task", "{p}", "--quiet"], "input"),
    "sweep --db": (["sweep", "{spec}", "--db", "{p}", "--executor", "inline", "--quiet"], "file"),
    "sweep SPEC": (["sweep", "{p}", "--db", "{root}/never.sqlite", "--dry-run"], "input"),
    "status --db": (["status", "--db", "{p}"], "input"),
    "report --db": (["report", "--db", "{p}", "--out", "{root}/never_report"], "input"),
    "report --out": (["report", "--db", "{db}", "--out", "{p}"], "folder"),
    "theory fig3 --out": (["theory", "fig3", "--rank", "4", "--fan-in", "16", "--scales", "2", "--out", "{p}",
                           "--figure", "{root}/fig3.png"], "file"),
    "theory fig3 --figure": (["theory", "fig3", "--rank", "4", "--fan-in", "16", "--scales", "2", "--out",
                              "{root}/fig3.json", "--figure", "{p}"], "file"),
    "theory spectrum --figure-dir": (["theory", "spectrum", "--fan-in", "16", "--rank", "4", "--figure-dir", "{p}"],
                                     "folder"),
}


def _fake_run(experiment, config, **options):
    class Model:
        def save_pretrained(self, folder, safe_serialization=True):
            from pathlib import Path

            (Path(folder) / "adapter_model.safetensors").write_bytes(b"weights")

    return {"metrics": {"clean": {"accuracy": 0.5}}, "poison": {}, "train": {}, "runtime": {}, "_model": Model()}


@settings(FUZZ, max_examples=90)
@given(option=st.sampled_from(sorted(PATH_COMMANDS)), path=paths)
def test_every_path_option_takes_a_random_path_or_refuses_it_in_one_line(capsys, monkeypatch, tmp_path_factory,
                                                                        path_sandbox, option, path):
    import os
    import stat
    from pathlib import Path

    import ttrlab.kinds.pipeline
    from conftest import install_counting_kind
    from test_io_boundaries import snapshot

    monkeypatch.setattr(ttrlab.kinds.pipeline, "run_document", _fake_run)
    install_counting_kind(tmp_path_factory.mktemp("kind", numbered=True), monkeypatch)
    root = Path(path_sandbox["root"])
    template, role = PATH_COMMANDS[option]
    given = path.format(**path_sandbox)
    argv = [part.format(p=given, **path_sandbox) for part in template]
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(root)  # a relative path lands in the sandbox
    try:
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err.strip()
    assert code in (0, 1, 2), f"{argv}: exit {code}: {err[-800:]}"
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("ttrlab") and "Traceback" not in err, f"{argv}: {err[-800:]}"
    after = snapshot(root)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    side = [root / name for name in ("fig3.json", "fig3.png", "never_report")]  # outputs the template names
    allowed = {p for p in changed if any(Path(p) == s or s in Path(p).parents for s in side)} if code == 0 else set()
    target = Path(os.path.abspath(root / os.path.expanduser(given))) if "\x00" not in given else None
    if target is not None:
        allowed |= {p for p in changed if p in (f"{target}-wal", f"{target}-shm")}  # SQLite's, beside a database
    if code == 0 and role != "input":
        allowed |= {p for p in changed if Path(p) == target or target in Path(p).parents or Path(p) in target.parents}
        if role == "file":
            assert stat.S_ISREG(os.lstat(target).st_mode), (argv, target)
        else:
            assert target.is_dir() and (target / ".ttrlab-output").is_file(), (argv, target)
    assert changed <= allowed, f"{argv}: changed {sorted(changed - allowed)[:5]}"
    assert not stat.S_ISREG(os.lstat(path_sandbox["device"]).st_mode)
    import shutil

    for other in side:  # the next example starts without them
        shutil.rmtree(other, ignore_errors=True) if other.is_dir() else other.unlink(missing_ok=True)


# ---- (e) task files: random columns, cell types, encodings, formats -------------------------------------
SECRET = "s3cr3t-DATA-7f1d"
COLUMNS = ["text", "label", "title", "text ", "Label", SECRET, "", "a,b", '"q"']
cells = st.one_of(st.sampled_from(["pos", "neg", "", "  ", "good film", SECRET, f"{SECRET} pos", "1", "0"]),
                  st.text(max_size=6), st.integers(-3, 3), st.floats(allow_nan=True), st.booleans(), st.none(),
                  st.dictionaries(st.sampled_from(["a", SECRET]), st.sampled_from([1, SECRET]), max_size=2),
                  st.lists(st.sampled_from(["pos", SECRET]), max_size=2))
task_files = st.fixed_dictionaries({
    "format": st.sampled_from(["csv", "tsv", "jsonl"]),
    "columns": st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=4),
    "rows": st.lists(st.lists(cells, min_size=0, max_size=5), min_size=0, max_size=5),
    "encoding": st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]),
    "damage": st.sampled_from(["", "nul", "cut", "bom-twice"]),
})


def _task_bytes(case: dict) -> bytes:
    import csv
    import io
    import json

    columns = case["columns"]
    if case["format"] == "jsonl":
        lines = []
        for row in case["rows"]:
            pairs = [f"{json.dumps(c)}: {json.dumps(v)}" for c, v in zip(columns, row)]  # keeps repeated keys
            lines.append("{" + ", ".join(pairs) + "}")
        text = "\n".join(lines) + "\n"
    else:
        out = io.StringIO()
        writer = csv.writer(out, delimiter="," if case["format"] == "csv" else "\t", lineterminator="\n")
        writer.writerow(columns)
        for row in case["rows"]:
            writer.writerow(["" if v is None else v if isinstance(v, str) else json.dumps(v) for v in row])
        text = out.getvalue()
    data = text.encode(case["encoding"], errors="replace")
    if case["damage"] == "nul":
        data = data[: len(data) // 2] + b"\x00" + data[len(data) // 2:]
    elif case["damage"] == "cut":
        data = data[: max(0, len(data) - 3)]
    elif case["damage"] == "bom-twice":
        data = b"\xef\xbb\xbf\xef\xbb\xbf" + data
    return data


@settings(FUZZ, max_examples=120)
@given(case=task_files)
def test_a_random_task_file_is_valid_data_or_one_line_that_echoes_none_of_it(capsys, tmp_path_factory,
                                                                            stop_before_the_model, case):
    from ttrlab.data import get_task, load_split

    folder = tmp_path_factory.mktemp("task", numbered=True)
    (folder / f"train.{case['format']}").write_bytes(_task_bytes(case))
    (folder / "dev.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    (folder / "t.yaml").write_text(f"train: train.{case['format']}\ndev: dev.csv\ntext: text\nlabel: label\n"
                                   "labels: [neg, pos]\n")
    argv = ["train", "--task", str(folder / "t.yaml"), "--quiet", "--train-size", "1"]
    try:
        code = main(argv)
    except Validated:
        code = "valid"
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err, captured.err
    assert code in (2, "valid"), f"exit {code}: {captured.err[-800:]}"
    if code == 2:
        err = captured.err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("ttrlab") and "Traceback" not in err, err
    else:
        examples = load_split(get_task(str(folder / "t.yaml")), "train")
        assert all(isinstance(t, str) and t.strip() for e in examples for t in e.texts)
        assert len({e.label for e in examples}) >= 2
