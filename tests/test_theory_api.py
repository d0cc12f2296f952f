"""Theory pipeline, CLI and sweep kind: config validation, determinism, outputs."""
import json
import math

import pytest

from ttrlab.cli import main
from ttrlab.core.errors import UserError
from ttrlab.report import theory_vs_measured
from ttrlab.kinds.theory.config import TheoryConfig
from ttrlab.kinds.theory.experiment import compute_theory
from ttrlab.theory.figures import fig3_grid_from_results
from ttrlab.theory.measures import theorem_3_6_check


@pytest.fixture
def shared_glue(glue_dir, monkeypatch):
    """The default data lookup, pointed at the shared GLUE data (skipped, like the other data
    tests, where it is absent) instead of found from the cwd."""
    monkeypatch.setenv("TTRLAB_GLUE_DIR", str(glue_dir))


SMALL = dict(task="sst2", model="minilm", method="lora", attack="bpa", rate=0.5, n=4, train_size=40, seed=3)


def test_config_rejects_bad_keys_and_values():
    with pytest.raises(UserError, match="did you mean 'quantity'"):
        TheoryConfig.from_dict({"quantiy": "ntk"})
    with pytest.raises(UserError, match="quantity"):
        TheoryConfig.from_dict({"quantity": "nkt"}).validate()
    with pytest.raises(UserError, match="n 1"):
        TheoryConfig.from_dict({"n": 1}).validate()
    with pytest.raises(UserError, match="'n' must be int, got 2.5"):
        TheoryConfig.from_dict({"n": 2.5})


def test_run_key_ignores_training_knobs_but_not_theory_ones():
    a = TheoryConfig.from_dict({**SMALL, "max_steps": 10, "lr": 1e-3})
    b = TheoryConfig.from_dict({**SMALL, "max_steps": 99})
    assert a.run_key() == b.run_key()
    assert a.run_key() != TheoryConfig.from_dict({**SMALL, "n": 5}).run_key()
    assert a.run_key() != TheoryConfig.from_dict({**SMALL, "rank": 4}).run_key()
    ff = TheoryConfig.from_dict({**SMALL, "method": "ff"})
    assert ff.run_key() == TheoryConfig.from_dict({**SMALL, "method": "ff", "rank": 64}).run_key()


@pytest.mark.usefixtures("shared_glue")
def test_lora_theory_is_deterministic_and_complete():
    config = TheoryConfig.from_dict(SMALL).validate()
    first = compute_theory(config)
    second = compute_theory(TheoryConfig.from_dict(SMALL).validate())
    assert first["metrics"] == second["metrics"]
    m = first["metrics"]
    assert m["ntk_trace"] == pytest.approx(m["ntk_trace_head"] + m["ntk_trace_adapters_only"], rel=1e-9)
    assert first["m_prime"]["identical_inputs"] == 0  # BPA changes every paired input
    assert first["gradient_alignment"]["equation"] == 16
    assert first["fisher"]["poisoned_in_sample"] == 2
    assert len(first["fisher"]["groups"]["all"]["eigenvalues"]) == 4
    assert all(isinstance(v, float) and not math.isnan(v) for v in m.values())
    json.dumps(first)  # JSON-able


@pytest.mark.slow
@pytest.mark.usefixtures("shared_glue")
def test_ff_and_lora_share_the_head_and_theorem_3_6_compares_everything():
    m = (lora := compute_theory(TheoryConfig.from_dict(SMALL).validate()))["metrics"]
    ff = compute_theory(TheoryConfig.from_dict({**SMALL, "method": "ff"}).validate())
    verdict = theorem_3_6_check(ff, lora)
    assert {"ib_logdet", "ib_paper", "renyi_1_normalized", "renyi_inf_literal"} <= set(verdict["comparisons"])
    assert ff["metrics"]["ntk_trace_head"] == pytest.approx(m["ntk_trace_head"], rel=1e-9)  # same head init


@pytest.mark.usefixtures("shared_glue")
def test_upa_pairs_have_identical_inputs():
    result = compute_theory(TheoryConfig.from_dict({**SMALL, "attack": "upa", "quantity": "ntk"}).validate())
    assert result["m_prime"]["identical_inputs"] == 4
    assert "fisher" not in result and result["gradient_alignment"]["equation"] == 17


def test_sweep_kind_and_fig3_from_results():
    from ttrlab.kinds.registry import RUN_KINDS

    kind = RUN_KINDS.get("theory")
    with pytest.raises(UserError):
        kind.config_from_dict({"rnak": 4})
    results = []
    for rank in (4, 16):
        for k in (0.01, 1.0):
            config = kind.config_from_dict({"quantity": "spectrum", "rank": rank, "init_scale": k, "fan_in": 64})
            results.append(kind.run(config))
            assert results[-1]["run_key"] == kind.run_key(config)
    grid = fig3_grid_from_results(results)
    assert grid["ranks"] == [4, 16] and len(grid["scales"]) == 2 and grid["fan_in"] == 64


def test_theory_vs_measured_rank_correlation(tmp_path):
    from ttrlab.attacks import ATTACKS

    measure = ATTACKS.get("bpa").robustness_measure()  # a backdoor's: the ASR
    theory, training = [], []
    for i, rank in enumerate((4, 8, 16, 32)):
        config = {"task": "sst2", "model": "minilm", "method": "lora", "rank": rank, "init": "kaiming_uniform",
                  "init_scale": None, "attack": "bpa", "rate": 0.1, "seed": 0}
        theory.append({"config": config, "metrics": {"m_prime": float(i)}})
        training.append({"config": config, "metrics": {"asr": 0.1 * i, "clean.accuracy": 0.9}})
    # the same configuration at another seed: no theory run of that seed, so it is left out
    training.append({"config": {**training[-1]["config"], "seed": 1}, "metrics": {"asr": 5.0}})
    out = theory_vs_measured(theory, training, "m_prime", measure, path=tmp_path / "t.png")
    assert out["spearman_rho"] == pytest.approx(1.0) and out["n_points"] == 4
    assert next(p for p in out["points"] if p["key"]["rank"] == 32)["measured"] == pytest.approx(0.3)
    assert (tmp_path / "t.png").is_file()
    for t in training:
        t["metrics"]["asr"] = -t["metrics"]["asr"]
    assert theory_vs_measured(theory, training, "m_prime", measure)["spearman_rho"] == pytest.approx(-1.0)
    with pytest.raises(UserError, match="unknown measure"):
        theory_vs_measured(theory, training, "m_prime", "accuracy")


def test_cli_fig3_spectrum_and_errors(tmp_path, capsys):
    out = tmp_path / "fig3.json"
    assert main(["theory", "fig3", "--rank", "4,8", "--scales", "3", "--fan-in", "32", "--out", str(out)]) == 0
    grid = json.loads(out.read_text())
    assert grid["ranks"] == [4, 8] and (tmp_path / "fig3.png").is_file()
    assert main(["theory", "spectrum", "--rank", "4", "--fan-in", "64", "--init", "gaussian", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["checks"][0]["rank"] == 4
    capsys.readouterr()
    assert main(["theory", "spectrum", "--init", "gausian", "--fan-in", "8"]) == 2
    assert "did you mean 'gaussian'" in capsys.readouterr().err
    assert main(["theory", "ntk", "--method", "lora", "--n", "1", "--train-size", "10"]) == 2
    assert "n 1 must be >= 2" in capsys.readouterr().err


@pytest.mark.usefixtures("shared_glue")
def test_cli_ntk_writes_json(tmp_path):
    out = tmp_path / "ntk.json"
    args = ["theory", "ntk", "--method", "lora", "--attack", "upa", "--rate", "0.5", "--n", "3", "--train-size", "20",
            "--seed", "1", "--quiet", "--out", str(out)]
    assert main(args) == 0
    document = json.loads(out.read_text())
    assert document["kind"] == "theory" and document["metrics"]["m_prime"] > 0
