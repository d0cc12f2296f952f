"""Fused groups: `groups.work_units` (which runs share a unit, how big, in which order) and the
executors running a unit as one task — one outcome and one stored row per run, a raising or
dying group failing all its runs, `fuse=False` running each run alone.

The executor tests use a test-only run kind ("fusy") written into tmp_path and loaded through
TTRLAB_PLUGINS (as tests/test_sweep_run.py does with "sleepy"), so it reaches spawned workers and
Ray workers. Its `fusion_key` is the config's `family`; every config it computes, alone or in a
group, appends a line to the file named by $FUSY_LOG, so a test sees which process computed which
run in which group, and that each was computed exactly once.
"""
import json
import os
import textwrap
from collections import Counter

import pytest
import yaml
from conftest import install_plugin_kind

from ttrlab.sweep.groups import even_chunks, kind_fusion_key, unit_label, work_units
from ttrlab.sweep.spec import PlannedRun

FUSY_KIND = textwrap.dedent('''
    import hashlib, json, os
    from ttrlab.core.errors import UserError, did_you_mean
    from ttrlab.kinds.registry import RUN_KINDS

    DEFAULTS = {"x": 0.0, "family": None, "fail": False, "die": False, "seed": 0}

    class Config(dict):
        def to_dict(self):
            return dict(self)

    def log(configs, how):
        with open(os.environ["FUSY_LOG"], "a") as out:
            for c in configs:
                out.write(json.dumps({"x": c["x"], "seed": c["seed"], "how": how, "pid": os.getpid(),
                                      "group": [g["x"] for g in configs]}) + "\\n")

    def document(config, configs):
        return {"metrics": {"value": config["x"] * 10 + config["seed"], "group_size": len(configs)},
                "group": [c["x"] for c in configs]}

    class Fusy:
        def config_from_dict(self, values):
            for key in values:
                if key not in DEFAULTS:
                    raise UserError(f"unknown config key {key!r}{did_you_mean(key, DEFAULTS)}")
            return Config({**DEFAULTS, **values})

        def run_key(self, config):
            return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:24]

        def fusion_key(self, config):
            return config["family"]

        def run(self, config, progress=None):
            log([config], "alone")
            if config["fail"]:
                raise RuntimeError(f"asked to fail at x={config['x']}")
            return document(config, [config])

        def run_group(self, configs, progress=None):
            log(configs, "group")
            if progress:
                progress("step", step=1, total=1, loss=0.5)
            if any(c["die"] for c in configs):
                os._exit(7)
            if any(c["fail"] for c in configs):
                raise RuntimeError(f"group of {len(configs)} asked to fail")
            return [document(c, configs) for c in configs]

    if "fusy" not in RUN_KINDS:
        RUN_KINDS.register("fusy")(Fusy())
''')


@pytest.fixture
def fusy(tmp_path, monkeypatch):
    """Make the 'fusy' kind importable here, in spawned workers and in subprocesses; its log file."""
    log = tmp_path / "computed.jsonl"
    monkeypatch.setenv("FUSY_LOG", str(log))
    install_plugin_kind(tmp_path, monkeypatch, "fusy_kind", FUSY_KIND)
    return log


def fusy_spec(path, a=(1.0, 2.0, 3.0, 4.0, 5.0), b=(6.0, 7.0), alone=(8.0, 9.0), **b_base):
    """Family a (one unit of 5), family b (one unit of 2) and runs without a family (alone)."""
    path.write_text(yaml.safe_dump({
        "name": "fusy-sweep", "kind": "fusy", "seeds": [0],
        "grids": [{"name": "a", "base": {"family": "a"}, "axes": {"x": list(a)}},
                  {"name": "alone", "axes": {"x": list(alone)}},
                  {"name": "b", "base": {"family": "b", **b_base}, "axes": {"x": list(b)}}]}))
    return path


def computed(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def stored(db, status=None):
    from ttrlab.sweep import ResultStore

    with ResultStore(db) as store:
        return store.runs(status=status)


# ---- work_units (pure) ---------------------------------------------------------------------------
def runs_of(*keys, kind="k"):
    """One PlannedRun per key (None: no fusion key), named r0, r1, ... in spec order."""
    return [PlannedRun(kind, None, {"key": key}, f"r{i}", "g") for i, key in enumerate(keys)]


def by_key(run):
    return run.config_dict["key"]


def names(units):
    return [[run.run_key for run in unit] for unit in units]


def test_same_key_runs_share_a_unit_in_spec_order_and_keyless_runs_are_alone():
    runs = runs_of("a", None, "b", "a", None, "a", "b")
    assert names(work_units(runs, key=by_key)) == [["r0", "r3", "r5"], ["r2", "r6"], ["r1"], ["r4"]]


@pytest.mark.parametrize("count, max_group, sizes", [
    (10, 8, [5, 5]), (17, 8, [6, 6, 5]), (8, 8, [8]), (9, 8, [5, 4]), (16, 8, [8, 8]),
    (7, 3, [3, 2, 2]), (3, 1, [1, 1, 1]), (1, 8, [1]),
])
def test_groups_are_split_evenly_under_max_group(count, max_group, sizes):
    runs = runs_of(*["a"] * count)
    units = work_units(runs, max_group=max_group, key=by_key)
    assert [len(unit) for unit in units] == sizes
    assert [run for unit in units for run in unit] == runs  # consecutive chunks, spec order kept


def test_even_chunks():
    assert even_chunks(list(range(10)), 8) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert even_chunks([], 8) == []


def test_largest_unit_goes_first_and_ties_keep_spec_order():
    # units: c×1 (r0), a×2 (r1), b×3 (r3), None (r4), d×2 (r6), e×3 (r7)
    runs = runs_of("c", "a", "a", "b", None, "b", "d", "e", "b", "d", "e", "e")
    assert names(work_units(runs, key=by_key)) == [
        ["r3", "r5", "r8"], ["r7", "r10", "r11"], ["r1", "r2"], ["r6", "r9"], ["r0"], ["r4"]]


def test_fuse_off_is_every_run_alone_in_spec_order():
    runs = runs_of("a", None, "a", "b", "a")
    assert names(work_units(runs, fuse=False, key=by_key)) == [["r0"], ["r1"], ["r2"], ["r3"], ["r4"]]
    assert work_units([], key=by_key) == []
    with pytest.raises(ValueError, match="max_group"):
        work_units(runs, max_group=0, key=by_key)


def test_kind_fusion_key_asks_the_kind_and_plugins_without_the_methods_never_fuse():
    from ttrlab.kinds.registry import RUN_KINDS

    class Plain:  # a plugin kind written before fusion_key / run_group existed
        pass

    class HalfDone:  # a fusion key but no way to run a group: it cannot fuse either
        def fusion_key(self, config):
            return "same"

    class Pairs:
        def fusion_key(self, config):
            return config

        def run_group(self, configs, progress=None):
            return []

    for name, kind in (("test-plain", Plain()), ("test-half", HalfDone()), ("test-pairs", Pairs()),
                       ("test-pairs-too", Pairs())):
        if name not in RUN_KINDS:
            RUN_KINDS.register(name)(kind)

    def run(kind, config):
        return PlannedRun(kind, config, {}, f"{kind}-{config}", "g")

    assert kind_fusion_key(run("test-plain", "x")) is None
    assert kind_fusion_key(run("test-half", "x")) is None
    assert kind_fusion_key(run("test-pairs", None)) is None
    assert kind_fusion_key(run("test-pairs", "x")) == ("test-pairs", "x")
    # the same key under two kinds is two groups
    units = work_units([run("test-pairs", "x"), run("test-pairs-too", "x"), run("test-pairs", "x"),
                        run("test-plain", "x"), run("test-plain", "x")])
    assert [[r.kind for r in unit] for unit in units] == [
        ["test-pairs", "test-pairs"], ["test-pairs-too"], ["test-plain"], ["test-plain"]]


def test_unit_label_and_monitor_lines_per_run(capsys):
    from ttrlab.sweep.outcome import Outcome
    from ttrlab.sweep.monitor import Monitor

    unit = [PlannedRun("train", None, {"task": "sst2", "method": "ff", "seed": s}, f"k{s}", "g") for s in range(3)]
    assert unit_label(unit[:1]) == "sst2 ff seed 0"
    assert unit_label(unit) == "3 runs fused: sst2 ff seed 0 …"
    with Monitor(4, bars=False, lines=True) as monitor:
        monitor.start_run(0, unit_label(unit))
        monitor.finish_unit(0, [Outcome(run, {}, None, None, 2.0) for run in unit])
    assert capsys.readouterr().out.splitlines() == [
        "[1/4] finished  train sst2 ff seed 0  2.0 s", "[2/4] finished  train sst2 ff seed 1  2.0 s",
        "[3/4] finished  train sst2 ff seed 2  2.0 s"]


# ---- executors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("executor", ["inline", "local"])
def test_each_run_computed_once_in_its_group_and_stored(fusy, tmp_path, executor):
    from ttrlab.sweep import run_sweep

    db = tmp_path / "r.sqlite"
    summary = run_sweep(fusy_spec(tmp_path / "s.yaml"), db, executor=executor, workers=2, progress=False,
                        fuse=True)
    assert (summary["ran"], summary["finished"], summary["failed"]) == (9, 9, 0)
    log = computed(fusy)
    assert Counter(entry["x"] for entry in log) == Counter(float(x) for x in range(1, 10))  # once each
    how = {entry["x"]: (entry["how"], entry["group"]) for entry in log}
    assert how == {**{x: ("group", [1.0, 2.0, 3.0, 4.0, 5.0]) for x in (1.0, 2.0, 3.0, 4.0, 5.0)},
                   6.0: ("group", [6.0, 7.0]), 7.0: ("group", [6.0, 7.0]),
                   8.0: ("alone", [8.0]), 9.0: ("alone", [9.0])}
    runs = stored(db)
    assert sorted(r["metrics"]["value"] for r in runs) == [10 * x for x in range(1, 10)]
    assert {r["config"]["x"]: r["result"]["group"] for r in runs} == {x: group for x, (_, group) in how.items()}
    # a group's runs share its start and an even share of its wall time
    family_a = [r for r in runs if r["config"]["family"] == "a"]
    assert len({r["seconds"] for r in family_a}) == 1
    if executor == "local":
        assert len({entry["pid"] for entry in log if entry["x"] <= 5}) == 1  # one worker held the unit
        assert os.getpid() not in {entry["pid"] for entry in log}
    again = run_sweep(fusy_spec(tmp_path / "s.yaml"), db, executor=executor, workers=2, progress=False, fuse=True)
    assert (again["already_finished"], again["ran"]) == (9, 0)
    assert len(computed(fusy)) == 9


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_raising_group_fails_all_its_runs_and_nothing_else(fusy, tmp_path, executor):
    from ttrlab.sweep import run_sweep

    db = tmp_path / "r.sqlite"
    summary = run_sweep(fusy_spec(tmp_path / "s.yaml", fail=True), db, executor=executor, workers=2, progress=False,
                        fuse=True)
    assert (summary["finished"], summary["failed"]) == (7, 2)
    assert [message for _, message in summary["failures"]] == ["RuntimeError: group of 2 asked to fail"] * 2
    failed = stored(db, status="failed")
    assert sorted(r["config"]["x"] for r in failed) == [6.0, 7.0]
    assert all("RuntimeError: group of 2 asked to fail" in r["error"] and r["metrics"] == {} for r in failed)
    assert Counter(entry["x"] for entry in computed(fusy)) == Counter(float(x) for x in range(1, 10))
    retried = run_sweep(fusy_spec(tmp_path / "s.yaml", fail=True), db, executor=executor, workers=2,
                        progress=False, retry_failed=True, fuse=True)
    assert (retried["ran"], retried["failed"]) == (2, 2)  # the failed group is retried as a group
    assert [entry["group"] for entry in computed(fusy)[9:]] == [[6.0, 7.0]] * 2


def test_a_worker_that_dies_fails_every_run_of_its_unit(fusy, tmp_path):
    from ttrlab.sweep import run_sweep

    summary = run_sweep(fusy_spec(tmp_path / "s.yaml", die=True), tmp_path / "r.sqlite", workers=1, progress=False,
                        fuse=True)
    assert (summary["finished"], summary["failed"]) == (7, 2)
    assert all(message.startswith("worker process died (exit code 7) while running this config (one of 2 runs fused")
               for _, message in summary["failures"])


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_fuse_off_runs_each_run_alone(fusy, tmp_path, executor):
    from ttrlab.sweep import run_sweep

    db = tmp_path / "r.sqlite"
    summary = run_sweep(fusy_spec(tmp_path / "s.yaml"), db, executor=executor, workers=2, progress=False, fuse=False)
    assert summary["finished"] == 9
    log = computed(fusy)
    assert sorted(entry["x"] for entry in log) == [float(x) for x in range(1, 10)]
    assert {entry["how"] for entry in log} == {"alone"}
    assert all(r["result"]["group"] == [r["config"]["x"]] for r in stored(db))


@pytest.mark.ray
def test_ray_runs_a_unit_as_one_task(fusy, tmp_path):
    ray = pytest.importorskip("ray")
    from ttrlab.sweep import run_sweep

    db = tmp_path / "r.sqlite"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"], "TTRLAB_PLUGINS": "fusy_kind",
                                       "FUSY_LOG": str(fusy)}})
    try:
        summary = run_sweep(fusy_spec(tmp_path / "s.yaml", fail=True), db, executor="ray", progress=False, fuse=True)
    finally:
        ray.shutdown()
    assert (summary["finished"], summary["failed"]) == (7, 2)
    log = computed(fusy)
    assert Counter(entry["x"] for entry in log) == Counter(float(x) for x in range(1, 10))
    assert len({entry["pid"] for entry in log if entry["x"] <= 5}) == 1
    assert {r["config"]["x"]: r["result"]["group"] for r in stored(db) if r["config"]["family"] == "a"} == {
        x: [1.0, 2.0, 3.0, 4.0, 5.0] for x in (1.0, 2.0, 3.0, 4.0, 5.0)}


# ---- the command line ------------------------------------------------------------------------------
def test_dry_run_prints_the_units_in_dispatch_order(fusy, tmp_path, capsys):
    from ttrlab.cli import main

    spec, db = fusy_spec(tmp_path / "s.yaml"), tmp_path / "r.sqlite"
    assert main(["sweep", str(spec), "--db", str(db), "--dry-run", "--fuse", "on"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("9 would run as 4 units (2 fused groups)")
    assert out[1] == "  group of 5:" and all(line.startswith("    ") and "[a] x=" in line for line in out[2:7])
    assert out[7] == "  group of 2:" and all("[b] x=" in line for line in out[8:10])
    assert all(line.startswith("  ") and "[alone] x=" in line for line in out[10:])
    assert len(out) == 12 and not db.exists() and computed(fusy) == []

    assert main(["sweep", str(spec), "--db", str(db), "--dry-run", "--fuse", "off"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("9 would run") and len(out) == 10 and "group" not in "".join(out)


@pytest.mark.parametrize("command", ["sweep", "run"])
def test_fuse_takes_on_or_off_else_one_line_exit_2(fusy, tmp_path, capsys, command):
    from ttrlab.cli import main

    where = [str(fusy_spec(tmp_path / "s.yaml"))] if command == "sweep" else []
    db = tmp_path / "r.sqlite"
    assert main([command, *where, "--db", str(db), "--fuse", "maybe"]) == 2
    assert capsys.readouterr().err == "ttrlab: error: --fuse 'maybe' must be on or off\n"
    assert not db.exists()
