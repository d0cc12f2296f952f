"""Sweep specs: validation before anything runs, cartesian expansion, include/exclude rules,
dedupe by run key, and the shipped specs under specs/."""
from pathlib import Path

import pytest
import yaml

from ttrlab.core.errors import UserError
from ttrlab.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
BASE = {"task": "sst2", "model": "minilm", "train_size": 64, "eval_size": 64, "max_steps": 3}


def spec(**parts):
    return {"name": "t", "base": dict(BASE), **parts}


def test_cartesian_product_times_seeds():
    s = load_spec(spec(seeds=[0, 1, 2], axes={"method": ["ff", "lora"], "rate": [0.1, 0.2], "attack": ["upa"]}))
    runs = s.expand().runs
    assert len(runs) == 2 * 2 * 3
    assert {(r.config.method, r.config.rate, r.config.seed) for r in runs} == {
        (m, rate, seed) for m in ("ff", "lora") for rate in (0.1, 0.2) for seed in (0, 1, 2)}
    assert len({r.run_key for r in runs}) == len(runs)


def test_ff_over_ranks_is_deduplicated_by_run_key():
    s = load_spec(spec(seeds=[0, 1], axes={"method": ["ff", "lora"], "rank": [4, 8, 16]}))
    expansion = s.expand()
    assert expansion.points == 2 * 3 * 2
    ff = [r for r in expansion.runs if r.config.method == "ff"]
    lora = [r for r in expansion.runs if r.config.method == "lora"]
    assert len(ff) == 2 and len(lora) == 3 * 2  # FF has no rank: one run per seed
    assert expansion.duplicates == 4


def test_include_and_exclude_rules():
    s = load_spec(spec(
        axes={"method": ["ff", "lora"], "attack": ["upa"], "rate": [0.1, 0.3]},
        exclude=[{"method": "ff", "rate": [0.3]}],
        include=[{"attack": "none", "rate": 0.0, "method": ["ff", "lora"]}],
    ))
    points = {(r.config.method, r.config.attack, r.config.rate) for r in s.expand().runs}
    assert points == {("ff", "upa", 0.1), ("lora", "upa", 0.1), ("lora", "upa", 0.3),
                      ("ff", "none", 0.0), ("lora", "none", 0.0)}


def test_exclude_matches_on_base_values_too():
    s = load_spec({"name": "t", "base": {**BASE, "method": "ff"}, "axes": {"rate": [0.1, 0.2]},
                   "exclude": [{"method": "ff", "rate": 0.2}]})
    assert [r.config.rate for r in s.expand().runs] == [0.1]


def test_grids_merge_their_base_over_the_top_level_base():
    s = load_spec(spec(seeds=[0], grids=[
        {"name": "clean", "base": {"attack": "bpa", "rate": 0.0}, "axes": {"method": ["ff", "lora"]}},
        {"name": "upa", "base": {"attack": "upa"}, "axes": {"rate": [0.1]}, "seeds": [5, 6]},
    ]))
    runs = s.expand().runs
    assert [(r.grid, r.config.attack, r.config.seed) for r in runs] == [
        ("clean", "bpa", 0), ("clean", "bpa", 0), ("upa", "upa", 5), ("upa", "upa", 6)]
    assert all(r.config.task == "sst2" and r.config.max_steps == 3 for r in runs)


@pytest.mark.parametrize("bad, message", [
    ({"axis": {"rate": [0.1]}}, "unknown key 'axis' (did you mean 'axes'?)"),
    ({"axes": {"rnak": [4, 8]}}, "unknown config key 'rnak' (did you mean 'rank'?)"),
    ({"axes": {"rate": []}}, "axis 'rate' is empty"),
    ({"axes": {"rate": 0.1}}, "axis 'rate' must be a list"),
    ({"axes": {"rank": ["eight"]}}, "'rank' must be int, got 'eight'"),
    ({"axes": {"method": ["lorra"]}}, "unknown method 'lorra' (did you mean 'lora'?)"),
    ({"axes": {"rate": [1.5]}}, "rate 1.5 is outside [0, 1]"),
    ({"axes": {"rate": [0.1]}, "seeds": [0, -1]}, "seed -1 must be an integer >= 0"),
    ({"axes": {"rate": [0.1]}, "seeds": "0"}, "'seeds' must be a non-empty list"),
    ({"axes": {"seed": [1, 2]}}, "'seed' is not an axis"),
    ({"axes": {"rate": [0.1]}, "exclude": [{"rnak": 4}]}, "exclude rule names 'rnak'"),
    ({"axes": {"rate": [0.1]}, "kind": "trian"}, "unknown run kind 'trian' (did you mean 'train'?)"),
    ({"axes": {"rate": [0.1]}, "resources": {"gpu": 1}}, "unknown key 'gpu' (did you mean 'gpus'?)"),
    ({"axes": {"rate": [0.1]}, "resources": {"gpus": 1.5}},
     "'resources': 'gpus' 1.5 must be a fraction of one GPU (0.5, 0.25) or a whole number of GPUs"),
    ({"axes": {"rate": [0.1]}, "resources": {"gpus": -1}}, "'gpus' must be a number >= 0, got -1"),
    ({"grids": [{"name": "g", "axes": {"rate": [0.1]}, "exlude": []}]}, "grid 'g': unknown key 'exlude' (did you mean 'exclude'?)"),
    ({"grids": []}, "'grids' must be a non-empty list"),
    ({}, "nothing to run"),
])
def test_bad_specs_raise_user_error_before_running(bad, message):
    with pytest.raises(UserError) as error:
        load_spec(spec(**bad))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_yaml_file_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(UserError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(UserError, match="must be a YAML mapping"):
        load_spec(path)


def test_spec_hash_is_stable_and_content_sensitive():
    a = load_spec(spec(axes={"rate": [0.1, 0.2]}))
    b = load_spec(spec(axes={"rate": [0.1, 0.2]}))
    c = load_spec(spec(axes={"rate": [0.1, 0.3]}))
    assert a.sha256 == b.sha256 != c.sha256


EXPECTED_RUNS = {
    "cpu/main.yaml": 20,
    "cpu/fig1_fig6_upa.yaml": 48,
    "cpu/fig2_fig7_fig8_bpa.yaml": 60,
    "cpu/fig4_fig9_fig10_rank.yaml": 72,
    "cpu/fig5_fig11_fig12_variance.yaml": 54,
    "cpu/table2_init_strategies.yaml": 36,
    "cpu/threats.yaml": 48,
    "cpu/dose_response.yaml": 84,
    "paper/fig1_fig6_upa.yaml": 540,
    "paper/fig2_fig7_fig8_bpa.yaml": 540,
    "paper/fig4_fig9_fig10_rank.yaml": 540,
    "paper/fig5_fig11_fig12_variance.yaml": 420,
    "paper/table2_init_strategies.yaml": 120,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_shipped_specs_load_and_expand(name):
    s = load_spec(REPO / "specs" / name)
    assert len(s.expand().runs) == EXPECTED_RUNS[name]
    if name.startswith("cpu/"):
        wall = s.expected_wall_time
        assert wall["cores"] == 2 and wall["minutes"] > 0 and wall["basis"]
        assert all(r.config.model == "minilm" for r in s.expand().runs)
        assert len(s.seeds) >= 2
    else:
        runs = s.expand().runs
        assert all(r.config.model == "bert-large-uncased" and r.config.max_length == 512
                   and r.config.max_steps == 10000 and r.config.lr_preset == "paper" for r in runs)
        assert s.seeds == [1, 2, 3, 4, 5]


def test_shipped_specs_cover_every_figure():
    figures = set()
    for path in (REPO / "specs" / "paper").glob("*.yaml"):
        figures |= {str(f) for f in yaml.safe_load(path.read_text())["figures"]}
    assert figures >= {"1", "2", "4", "5", "6", "7", "8", "9", "10", "11", "12", "table2"}


def test_cpu_specs_share_the_clean_runs():
    """The clean (rate 0) runs of the UPA and BPA specs are the same runs (one key)."""
    upa = {r.run_key for r in load_spec(REPO / "specs/cpu/fig1_fig6_upa.yaml").expand().runs if r.config.rate == 0}
    bpa = {r.run_key for r in load_spec(REPO / "specs/cpu/fig2_fig7_fig8_bpa.yaml").expand().runs if r.config.rate == 0}
    assert len(upa) == 12 and upa == bpa


def test_resources_gpu_fractions_and_whole_gpus_are_accepted():
    for gpus in (0, 0.25, 0.5, 1, 2, 4.0):
        assert load_spec(spec(axes={"rate": [0.1]}, resources={"gpus": gpus})).resources.gpus == gpus
