"""Runs: one run's state in one object and one train path for the pipeline, the defenses and the
fused group; no device default below the CLI; a run that did not learn its task says so; a long
job states its plan first; one data-folder table that every executor forwards; and what must not
change (shipped run keys, a run as a pure function of its config and seed)."""
from __future__ import annotations

import hashlib
import inspect
import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import install_plugin_kind

from ttrlab import RunConfig
from ttrlab.cli import main
from ttrlab.core.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "ttrlab"
TINY = dict(task="sst2", model="minilm", train_size=64, eval_size=32, max_steps=8, batch_size=8, lr_preset="cpu",
            method="lora", attack="bpa", rate=0.25, seed=0)
TIMES = {"seconds", "tokens_per_second", "eval_seconds", "curve_seconds", "score_seconds", "versions", "device_name"}


def _timeless(document):
    """A result document without what the clock and the machine decide."""
    if isinstance(document, dict):
        return {k: _timeless(v) for k, v in document.items() if k not in TIMES and not k.startswith("_")}
    if isinstance(document, list):
        return [_timeless(v) for v in document]
    return document


# ---- one state, one train path ------------------------------------------------------------------
def test_a_run_is_start_train_finish_and_a_pure_function_of_its_config_and_seed(glue_dir):
    """`run` is `start` → `train` → `finish` in a line; the same config (seed included) gives the
    same document, to the last digit, whoever calls the steps."""
    from ttrlab.kinds.classification.experiment import CLASSIFICATION, run_experiment
    from ttrlab.kinds.pipeline import RunState, finish, start, train

    config = RunConfig(**TINY, data_dir=str(glue_dir)).validate()
    alone = run_experiment(config)
    state = start(CLASSIFICATION, config)
    assert isinstance(state, RunState) and state.prepared is None and state.train is None
    train(CLASSIFICATION, state)
    assert state.train["steps"] == TINY["max_steps"] and state.tokenizer is not None
    by_steps = finish(CLASSIFICATION, state).to_dict()
    assert _timeless(by_steps) == _timeless(alone)
    assert _timeless(run_experiment(config)) == _timeless(alone)
    assert run_experiment(config.replace(seed=1))["poison"]["indices_sha256"] != alone["poison"]["indices_sha256"]


def test_a_defense_retrains_through_the_runs_own_train_path(glue_dir, monkeypatch):
    import ttrlab.kinds.pipeline as pipeline
    from ttrlab.kinds.classification.experiment import run_experiment

    calls = []
    train = pipeline.train

    def counted(experiment, state, examples=None, **options):
        calls.append(None if examples is None else len(examples))
        return train(experiment, state, examples, **options)

    monkeypatch.setattr(pipeline, "train", counted)
    result = run_experiment(RunConfig(**{**TINY, "max_steps": 4}, defense="loss_filter", data_dir=str(glue_dir)))
    assert calls == [None, result["defense"]["counts"]["kept"]]  # the run, then the retrain on what the filter kept
    assert result["defense"]["retrain"]["steps"] == 4


@pytest.mark.slow
def test_a_fused_group_makes_and_records_each_run_as_alone(glue_dir, monkeypatch):
    import ttrlab.kinds.fused.group as group
    from ttrlab.kinds.classification.experiment import CLASSIFICATION

    made, recorded = [], []
    start, finish = group.start, group.finish
    monkeypatch.setattr(group, "start", lambda experiment, config, data=None: made.append(config) or start(experiment, config, data))
    monkeypatch.setattr(group, "finish", lambda experiment, state, keep=False: recorded.append(state) or finish(experiment, state, keep))
    configs = [RunConfig(**{**TINY, "max_steps": 3, "seed": seed}, data_dir=str(glue_dir)) for seed in (0, 1)]
    documents = group.run_group(CLASSIFICATION, configs)
    assert made == configs and [s.config for s in recorded] == configs
    assert all(state.train["fused_group"]["size"] == 2 for state in recorded)
    assert [d["run_key"] for d in documents] == [c.run_key() for c in configs]


# ---- no device default below the CLI ------------------------------------------------------------
def test_nothing_below_the_cli_picks_a_device_by_itself():
    """Where a run computes is a required argument everywhere below the CLI: a caller that forgets
    it fails at once instead of computing on the CPU (or any other default)."""
    from ttrlab.defenses.onion import OnionCleaner, perplexities
    from ttrlab.kinds.fused.group import fused_model, optimize_group
    from ttrlab.kinds.generative.alignment import aligned_model
    from ttrlab.kinds.generative.evaluate import generate, response_perplexity
    from ttrlab.models.runtime import Runtime
    from ttrlab.training.loop import optimize, predict

    for function, names in ((optimize, ["runtime"]), (predict, ["runtime"]), (generate, ["runtime"]),
                            (response_perplexity, ["runtime"]), (OnionCleaner.__init__, ["device"]),
                            (perplexities, ["device"]), (Runtime.resolve, ["device", "precision"]),
                            (fused_model, ["runtime"]), (optimize_group, ["runtime"]), (aligned_model, ["runtime"])):
        parameters = inspect.signature(function).parameters
        for name in names:
            assert parameters[name].default is inspect.Parameter.empty, f"{function.__qualname__}({name}=...)"
    with pytest.raises(TypeError):
        Runtime.resolve("cpu")  # noqa
    # and no module below the CLI names a device of its own when it resolves one
    for path in SRC.rglob("*.py"):
        if "cli" in path.relative_to(SRC).parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"Runtime\.resolve\(\s*['\"]", text), path
        assert not re.search(r"runtime\s+or\s+Runtime", text), path


# ---- a first run that means something -----------------------------------------------------------
def test_the_fit_rule_is_the_one_the_claims_engine_declares():
    import math

    from ttrlab.report.claims.declared import read_claims
    from ttrlab.training.fit import learned, loss_limit, max_loss_share

    declared = read_claims().checks["learned"].params["max_loss_share_of_log_classes"]
    assert max_loss_share() == declared
    assert loss_limit(2) == declared * math.log(2) and loss_limit(3) == declared * math.log(3)
    assert learned(loss_limit(2), 2) is False and learned(loss_limit(2) - 1e-9, 2) is True
    assert learned(None, 2) is None and learned(0.1, None) is None  # not trained / not a classifier


def test_a_short_run_at_the_papers_rate_says_it_did_not_learn_and_which_preset_to_use(glue_dir, capsys):
    """The paper's rates are made for 10,000 steps: a short clean run at them barely moves the model;
    its result says so (`train.learned` false) and the command says it in one line, naming the
    preset made for short runs."""
    code = main(["train", "--task", "sst2", "--data-dir", str(glue_dir), "--train-size", "64", "--eval-size", "32",
                 "--max-steps", "8", "--attack", "bpa", "--rate", "0", "--method", "lora", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    train = json.loads(captured.out)["train"]
    assert train["learned"] is False
    assert {"steps", "seconds", "tokens_per_second", "real_tokens", "padded_tokens", "final_loss",
            "eval_seconds", "learned"} == set(train)  # one field more, none changed
    warnings = [line for line in captured.err.splitlines() if line.startswith("ttrlab: warning:")]
    assert len(warnings) == 1 and len(captured.err.strip().splitlines()) == 1
    assert "did not learn the task" in warnings[0] and "--lr-preset cpu" in warnings[0]
    assert "10,000 steps" in warnings[0] and "train.learned: false" in warnings[0]


def test_the_preset_hint_only_when_the_preset_decided_the_rate():
    from ttrlab.training.fit import not_learned_message

    paper = RunConfig(lr_preset="paper", max_steps=300)
    assert "--lr-preset cpu" in not_learned_message(0.69, 2, paper)
    assert "--lr-preset cpu" not in not_learned_message(0.69, 2, paper.replace(lr=1e-3))  # the rate was the user's
    assert "--lr-preset cpu" not in not_learned_message(0.69, 2, RunConfig(lr_preset="cpu", max_steps=300))


# ---- the plan a long job states first ------------------------------------------------------------
SEEN_KIND = textwrap.dedent('''
    import hashlib, json, os
    from ttrlab.kinds.registry import RUN_KINDS
    from ttrlab.data.folders import FOLDER_ENV_VARS

    class Config(dict):
        def to_dict(self):
            return dict(self)

    class Seen:
        """Returns, as its result, the data-folder variables of the process that computed it."""
        def config_from_dict(self, values):
            return Config({"x": 0, "seed": 0, **values})

        def run_key(self, config):
            return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:24]

        def run(self, config, progress=None):
            unlearned = {"train": {"learned": False}} if config["x"] < 0 else {}  # x < 0: a model that did not learn
            return {"metrics": {"x": config["x"]}, "environment": {name: os.environ.get(name) for name in FOLDER_ENV_VARS},
                    **unlearned}

    if "seen" not in RUN_KINDS:
        RUN_KINDS.register("seen")(Seen())
''')


@pytest.fixture
def seen_kind(tmp_path, monkeypatch):
    return install_plugin_kind(tmp_path, monkeypatch, "seen_kind", SEEN_KIND)


def _spec(path: Path, xs, **extra) -> Path:
    path.write_text(yaml.safe_dump({"name": "seen", "kind": "seen", "seeds": [0, 1], "axes": {"x": list(xs)}, **extra}))
    return path


def test_a_sweep_states_its_plan_and_estimate_before_its_runs(seen_kind, tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    timed = _spec(tmp_path / "timed.yaml", [1, 2], expected_wall_time={"cores": 2, "workers": 2, "minutes": 12})
    assert main(["sweep", str(timed), "--db", str(db), "--executor", "inline", "--quiet"]) == 0
    printed = capsys.readouterr()
    first = [line for line in printed.err.splitlines() if line.startswith("plan:")]
    assert first[0] == ("plan: sweep 'seen': 4 runs, 0 already finished, 4 to run on 1 worker; about 24 min "
                        "(the spec's expected_wall_time: 12 min for all 4 runs, scaled from its 2 workers)")
    assert printed.out.startswith("sweep 'seen': 4 runs planned")  # stdout: the summary only (--quiet)
    untimed = _spec(tmp_path / "untimed.yaml", [1, 2, 3])  # no expected_wall_time: the stored seconds
    assert main(["sweep", str(untimed), "--db", str(db), "--executor", "inline", "--quiet"]) == 0
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("plan: sweep 'seen': 6 runs, 4 already finished, 2 to run on 1 worker; about ")
    assert "from the seconds the database recorded" in line
    fresh = _spec(tmp_path / "fresh.yaml", [5])
    assert main(["sweep", str(fresh), "--db", str(tmp_path / "new.sqlite"), "--executor", "inline", "--quiet"]) == 0
    assert "no time estimate yet" in capsys.readouterr().err.splitlines()[0]


def test_a_sweep_says_how_many_of_its_runs_did_not_learn(seen_kind, tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    assert main(["sweep", str(_spec(tmp_path / "s.yaml", [-1, 2])), "--db", str(db), "--executor", "inline",
                 "--quiet"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ttrlab: warning:")]
    assert len(warnings) == 1 and "2 of the 4 runs did not learn the task" in warnings[0]
    assert main(["sweep", str(_spec(tmp_path / "t.yaml", [2, 3])), "--db", str(db), "--executor", "inline",
                 "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err  # the other sweep's runs are not this one's


# ---- one data-folder table, forwarded by every executor ------------------------------------------
def test_every_data_folder_resolves_through_one_table(tmp_path, monkeypatch):
    from ttrlab.data.folders import DATA_FOLDERS, FOLDER_ENV_VARS, resolve_folder
    from ttrlab.data.loading import resolve_glue_dir
    from ttrlab.data.style import resolve_style_dir
    from ttrlab.kinds.generative.data import resolve_data_dir

    assert FOLDER_ENV_VARS == ("TTRLAB_GLUE_DIR", "TTRLAB_STYLE_DIR", "TTRLAB_DATA_DIR")
    by_kind = {"glue": resolve_glue_dir, "style": resolve_style_dir, "instruction": resolve_data_dir}
    assert set(by_kind) == set(DATA_FOLDERS)
    monkeypatch.chdir(tmp_path)  # nothing found above the cwd
    for name, folder in DATA_FOLDERS.items():
        made = tmp_path / name
        (made / folder.marker).parent.mkdir(parents=True) if folder.marker else made.mkdir()
        if folder.marker:
            (made / folder.marker).write_text("[]")
        monkeypatch.setenv(folder.env, str(made))
        assert resolve_folder(name, None) == by_kind[name](None) == made  # the variable
        assert by_kind[name](str(made)) == made  # the setting
        monkeypatch.delenv(folder.env)
        with pytest.raises(UserError, match=rf"\${folder.env} unset"):
            by_kind[name](None)
        with pytest.raises(UserError, match="is not a directory|has no"):
            by_kind[name](str(tmp_path / "nowhere"))


def test_local_and_inline_workers_see_every_data_folder_variable(seen_kind, tmp_path, monkeypatch):
    from ttrlab.data.folders import FOLDER_ENV_VARS
    from ttrlab.sweep import ResultStore, run_sweep

    for name in FOLDER_ENV_VARS:
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    for executor in ("inline", "local"):
        db = tmp_path / f"{executor}.sqlite"
        summary = run_sweep(_spec(tmp_path / "s.yaml", [1]), db, executor=executor, workers=1, progress=False)
        assert summary["finished"] == 2
        with ResultStore(db) as store:
            for run in store.runs():
                assert run["result"]["environment"] == {n: str(tmp_path / n.lower()) for n in FOLDER_ENV_VARS}


def test_ray_workers_get_every_data_folder_variable(monkeypatch, tmp_path):
    ray = pytest.importorskip("ray")
    from ttrlab.data.folders import FOLDER_ENV_VARS
    from ttrlab.sweep import executors

    if ray.is_initialized():
        pytest.skip("a Ray instance is running in this process")
    for name in FOLDER_ENV_VARS:
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    asked = {}

    class Started(Exception):
        pass

    def init(**options):
        asked.update(options)
        raise Started

    monkeypatch.setattr(ray, "init", init)

    class Queue:
        exhausted = False

    with pytest.raises(Started):
        executors.run_ray(Queue(), None, None, executors.Resources())
    forwarded = asked["runtime_env"]["env_vars"]
    assert {name: forwarded[name] for name in FOLDER_ENV_VARS} == {n: str(tmp_path / n.lower()) for n in FOLDER_ENV_VARS}


# ---- one of each --------------------------------------------------------------------------------
def test_the_main_job_spec_has_one_source():
    from ttrlab.cli.run import main_job_spec

    packaged = SRC / "specs" / "main.yaml"
    linked = REPO / "specs" / "cpu" / "main.yaml"
    assert linked.is_symlink() and linked.resolve() == packaged.resolve()  # not a second copy
    assert main_job_spec() == yaml.safe_load(packaged.read_text(encoding="utf-8"))


def test_the_kaiming_default_scale_is_one_constant_and_draws_what_it_drew():
    from ttrlab.methods import INIT_STRATEGIES, KAIMING_DEFAULT_K

    kaiming = INIT_STRATEGIES.get("kaiming_uniform")
    assert kaiming.default_k is KAIMING_DEFAULT_K == 1.0 / 3.0
    assert all(kaiming.variance(n, 8, None) == 1.0 / (3.0 * n) for n in range(1, 20_000))  # to the last bit


def test_names_that_meant_two_things_mean_one():
    import ttrlab.sweep.store as store
    from ttrlab.data import TASKS
    from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

    assert store.RunLease.__tablename__ == "claims" and not hasattr(store, "Claim")  # databases unchanged
    assert TASKS is not GENERATIVE_TASKS and "sst2" in TASKS and "jailbreak" in GENERATIVE_TASKS


# ---- what must not change ---------------------------------------------------------------------
# sha256 (first 16 hex digits) of the sorted run keys of every shipped spec, one per line, and their
# count: computed before the runs part of issue 26 moved the code; a key that changes would make a
# results database recompute (or, worse, mislabel) runs it already holds.
SHIPPED_RUN_KEYS = {
    # the specs of issues 27 and 28, pinned when they joined main (after the runs part)
    "specs/cpu/advise.yaml": ("33261aaf10e26eb2", 108),
    "specs/cpu/dose_response.yaml": ("51775709ec8c5dea", 84),
    "specs/cpu/threats.yaml": ("8d9a705b7c2b8531", 48),
    "specs/cpu/defenses.yaml": ("834cf338812b7180", 14),
    "specs/cpu/fig1_fig6_upa.yaml": ("6fd32cdb5fab6a12", 48),
    "specs/cpu/fig2_fig7_fig8_bpa.yaml": ("16d91d023de3e33c", 60),
    "specs/cpu/fig4_fig9_fig10_rank.yaml": ("47dd027d6d9dc86f", 72),
    "specs/cpu/fig5_fig11_fig12_variance.yaml": ("d6561b0d9e903f58", 54),
    "specs/cpu/main.yaml": ("5f7ced10e5f49275", 20),
    "specs/cpu/methods.yaml": ("1f3cd39805282442", 52),
    "specs/cpu/table2_init_strategies.yaml": ("7e4ca83e5b39c356", 36),
    "specs/cpu/table3.yaml": ("569e4da533ae0276", 21),
    "specs/cpu/table3_jailbreak.yaml": ("839c690546f95bd9", 12),
    "specs/cpu/table_e1.yaml": ("130d84b16e60b035", 48),
    "specs/cpu/theory_fig3.yaml": ("0ceff5fdbaf81376", 288),
    "specs/cpu/theory_main.yaml": ("ba13b6c08c0f737b", 16),
    "specs/cpu/theory_rank_variance.yaml": ("74e512b88b40df77", 36),
    "specs/cpu/tour.yaml": ("44ee94348d371359", 4),
    "specs/paper/fig1_fig6_upa.yaml": ("868070a7a857bf37", 540),
    "specs/paper/fig2_fig7_fig8_bpa.yaml": ("5969c22d051a15bc", 540),
    "specs/paper/fig4_fig9_fig10_rank.yaml": ("1f2045dd936e5a71", 540),
    "specs/paper/fig5_fig11_fig12_variance.yaml": ("ff4add4044ed78e6", 420),
    "specs/paper/table2_init_strategies.yaml": ("49625aaad2e2bdcb", 120),
    "specs/paper/table3.yaml": ("c9f55832480e5120", 36),
    "specs/paper/table_e1.yaml": ("af4c14250d215bda", 40),
    "specs/paper/theory_fig3.yaml": ("8e817fddb8960f47", 2640),
    "specs/paper/theory_rank_variance.yaml": ("b637dbdd94b0243f", 600),
    "specs/paper/theory_rates.yaml": ("3609ebdda52fb121", 360),
    "src/ttrlab/specs/main.yaml": ("5f7ced10e5f49275", 20),
}


def test_every_shipped_spec_keeps_its_run_keys():
    from ttrlab.sweep.spec import load_spec

    shipped = {str(p.relative_to(REPO)) for p in (REPO / "specs").rglob("*.yaml")} | {"src/ttrlab/specs/main.yaml"}
    assert shipped == set(SHIPPED_RUN_KEYS)
    for name, (digest, count) in SHIPPED_RUN_KEYS.items():
        keys = sorted(run.run_key for run in load_spec(REPO / name).expand().runs)
        assert (hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16], len(keys)) == (digest, count), name

