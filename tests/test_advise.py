"""ttrlab advise: predictors deterministic given the seed, a planted predictor–harm relation
recovered from held-out fits, no leakage of a held-out configuration into its fit, harm measured
per configuration (seeds averaged, against the same seed's clean run), bad input refused."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ttrlab.advise.calibrate import Ridge, evaluate, folds, held_out_predictions, spearman_interval
from ttrlab.advise.predictors import PREDICTORS
from ttrlab.advise.targets import TARGETS, configurations

REPO = Path(__file__).resolve().parents[1]


def _cpu():
    from ttrlab.models.runtime import Runtime

    return Runtime.resolve("cpu", "fp32")


# ---- synthetic calibration data ---------------------------------------------------------------
def synthetic_records(rng, n, signal):
    """Probe records whose grad_alignment (log-scaled) carries `signal` × the harm; every other
    predictor is noise."""
    harm = rng.uniform(0, 1, n)
    records = []
    for h in harm:
        records.append({
            "config": {"rate": float(rng.choice([0.01, 0.05]))},
            "theory": {"grad_inner_abs": math.exp(signal * h + rng.normal(0, 0.1)), "m_prime": math.exp(rng.normal()),
                       "grad_cosine": rng.normal()},
            "baseline": {"trainable_parameters": int(rng.integers(10, 10_000)), "update_norm": math.exp(rng.normal()),
                         "poison_loss": rng.normal(), "poison_loss_drop": rng.normal()},
        })
    return records, harm


def test_planted_relation_is_recovered_and_noise_is_not():
    rng = np.random.default_rng(1)
    records, harm = synthetic_records(rng, 30, signal=3.0)
    groups = [f"c{i}" for i in range(30)]
    planted = evaluate(records, harm, groups, ["grad_alignment"])
    assert planted["rho"] > 0.8 and planted["low"] > 0.5
    assert planted["coef"][0] > 0  # the fitted direction is the planted one
    noise = evaluate(records, harm, groups, ["poison_loss"])
    assert noise["low"] < 0 < noise["high"]  # a predictor unrelated to harm: its interval covers 0
    # several predictors together, the planted one among noise: the ridge fit still finds it
    together = evaluate(records, harm, groups, ["grad_alignment", "m_prime", "poison_loss", "update_norm"])
    assert together["rho"] > 0.7


def test_negative_relation_gives_positive_held_out_rho():
    """The sign is fitted, not assumed: a predictor that falls with harm still ranks well."""
    rng = np.random.default_rng(2)
    records, harm = synthetic_records(rng, 25, signal=-3.0)
    result = evaluate(records, harm, [f"c{i}" for i in range(25)], ["grad_alignment"])
    assert result["rho"] > 0.8 and result["coef"][0] < 0


# ---- leakage ----------------------------------------------------------------------------------
def test_folds_never_split_a_configuration():
    groups = ["a", "a", "b", "c", "c", "c", "d", "e", "e"]
    for k in (None, 2, 3):
        for train, test in folds(groups, k):
            assert not {groups[i] for i in train} & {groups[i] for i in test}
        held = np.concatenate([test for _, test in folds(groups, k)])
        assert sorted(held) == list(range(len(groups)))  # every row predicted exactly once


def test_held_out_configuration_never_enters_its_fit():
    """A spy fit records the rows it is given; and a memorising model (which would predict a
    configuration exactly if its own rows were in the fit) predicts none of them exactly."""
    rng = np.random.default_rng(3)
    groups = [g for g in "abcdefgh" for _ in range(3)]  # 3 rows (e.g. seeds) per configuration
    code = {g: float(i) for i, g in enumerate("abcdefgh")}
    x = np.array([[code[g]] for g in groups])
    y = np.array([rng.normal() for _ in groups])
    seen = []

    class Memory:
        def __init__(self, xs, ys):
            self.table = {float(a[0]): b for a, b in zip(xs, ys)}

        def predict(self, xs):
            return np.array([self.table.get(float(a[0]), 1e9) for a in xs])

    def spy(xs, ys):
        seen.append({float(a[0]) for a in xs})
        return Memory(xs, ys)

    predicted = held_out_predictions(x, y, groups, fit=spy, how="predict")
    for train_codes, (_, test) in zip(seen, folds(groups)):
        assert not train_codes & {code[groups[i]] for i in test}
    assert np.all(predicted == 1e9)  # the memory never held a held-out configuration


# ---- measured harm per configuration -----------------------------------------------------------
def _run(key, seed, rate, asr, acc=0.9, attack="bpa", rank=8, loss=0.3):
    config = {"task": "sst2", "method": "lora", "rank": rank, "attack": attack, "rate": rate, "seed": seed,
              "defense": "none", "device": "cpu"}
    return {"kind": "train", "run_key": key, "config": config, "metrics": {"asr": asr, "clean.accuracy": acc},
            "seconds": 10.0, "result": {"train": {"final_loss": loss}}}


def test_harm_is_per_configuration_against_the_same_seed_clean_run():
    runs = [_run("p0", 0, 0.05, 0.9), _run("p1", 1, 0.05, 0.7), _run("c0", 0, 0.0, 0.1), _run("c1", 1, 0.0, 0.3),
            _run("q0", 0, 0.05, 0.5, rank=4), _run("d0", 0, 0.0, 0.2, rank=4, loss=0.69),  # its clean run did not learn
            _run("u0", 0, 0.2, 0.0, acc=0.8, attack="upa")]
    (lifted,) = configurations(runs, TARGETS.get("asr_lift"))
    assert lifted.seeds == [0, 1] and lifted.run_keys == ["p0", "p1"]
    assert lifted.harm == pytest.approx(((0.9 - 0.1) + (0.7 - 0.3)) / 2)
    (dropped,) = configurations(runs, TARGETS.get("accuracy_drop"))  # UPA: any clean run of the configuration
    assert dropped.harm == pytest.approx(0.9 - 0.8) and dropped.clean_run_keys == ["c0"]


def test_a_predictor_without_spread_ranks_nothing():
    """Constant across configurations (the rate within one candidate set): no ρ, not the ρ = −1
    that leave-one-out intercepts would give."""
    rng = np.random.default_rng(5)
    records, harm = synthetic_records(rng, 12, signal=3.0)
    for r in records:
        r["config"]["rate"] = 0.01
    assert evaluate(records, harm, [f"c{i}" for i in range(12)], ["rate"])["rho"] is None


def test_spearman_interval_is_over_rows_and_reports_small_n():
    assert spearman_interval(np.arange(3.0), np.arange(3.0))["rho"] is None
    result = spearman_interval(np.arange(20.0), np.arange(20.0) ** 2)
    assert result["rho"] == pytest.approx(1.0) and result["low"] == pytest.approx(1.0)


def test_ridge_recovers_a_linear_relation():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 2))
    y = 2.0 * x[:, 0] - 0.5 * x[:, 1] + 1.0
    model = Ridge.fit(x, y, penalty=1e-9)
    assert np.allclose(model.predict(x), y, atol=1e-6)


# ---- the probe: deterministic given the seed ---------------------------------------------------
def test_probe_is_deterministic_given_seed(glue_dir):
    from ttrlab.advise.probe import DataCache, ProbeSettings, probe

    values = {"task": "sst2", "model": "minilm", "method": "lora", "rank": 2, "attack": "bpa", "rate": 0.25,
              "lr_preset": "cpu", "train_size": 40, "max_length": 32, "data_dir": str(glue_dir)}
    data = DataCache()
    first = probe(values, ProbeSettings(n=4, steps=1, seed=0), data, runtime=_cpu())
    again = probe(values, ProbeSettings(n=4, steps=1, seed=0), data, runtime=_cpu())
    other = probe(values, ProbeSettings(n=4, steps=1, seed=1), data, runtime=_cpu())
    for name in PREDICTORS.registered():
        assert PREDICTORS.get(name).read(first) == PREDICTORS.get(name).read(again), name
    assert first["key"] == again["key"] != other["key"]
    assert first["theory"]["grad_inner_abs"] != other["theory"]["grad_inner_abs"]  # the seed matters
    assert first["baseline"]["trainable_parameters"] > 0 and first["baseline"]["update_norm"] > 0


# ---- the command -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, named", [
    (["advise", "--calibrate"], "--db"),
    (["advise", "--by", "nope"], "'nope'"),
    (["advise", "--rate", "nan"], "nan"),
    (["advise", "--folds", "1"], "--folds 1"),
    (["advise", "--probe-size", "1", "--method", "lora"], "probe size 1"),
])
def test_bad_input_is_one_line_and_exit_2(argv, named, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ttrlab.cli", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr


def test_advise_help_imports_no_torch(tmp_path):
    code = ("import sys\nfrom ttrlab.cli import main\ntry:\n    main(['advise', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'scipy') if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_a_stored_calibration_probe_is_what_the_code_computes():
    """docs/advise/probes_paper_cpu.jsonl (behind docs/advise.md's table) holds computed values, not
    typed ones: one LoRA configuration of the published database, probed again here, gives them."""
    import torch

    from conftest import GLUE, require_data
    from ttrlab.advise.cache import ProbeCache
    from ttrlab.advise.probe import ProbeSettings, probe, probe_key
    from ttrlab.sweep.store import ResultStore

    require_data(GLUE, "shared GLUE data")
    with ResultStore(REPO / "docs" / "results" / "paper_cpu.sqlite", create=False) as store:
        runs = store.runs(kind="train")
    settings = ProbeSettings(n=16, steps=3, seed=0)
    stored = ProbeCache(REPO / "docs" / "advise" / "probes_paper_cpu.jsonl")
    (chosen,) = [c for c in configurations(runs, TARGETS.get("asr_lift"))
                 if c.config["method"] == "lora" and c.config["rank"] == 4 and c.config["rate"] == 0.01]
    record = stored.get(probe_key(chosen.config, settings))
    assert record is not None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stored probes were computed
    try:
        again = probe(chosen.config, settings, runtime=_cpu())
    finally:
        torch.set_num_threads(threads)
    for name in PREDICTORS.registered():
        assert PREDICTORS.get(name).read(again) == pytest.approx(PREDICTORS.get(name).read(record), rel=1e-5), name


def _planted_database(tmp_path):
    """A results database of 8 LoRA configurations × 2 seeds (BPA 1%, each seed with its clean
    twin) whose ASR lift grows with the rank, and stored probes whose grad_alignment grows with it
    too and whose poison_loss is noise."""
    from ttrlab.advise.probe import PROBE_VERSION, ProbeSettings, probe_key
    from ttrlab.kinds.classification.config import RunConfig
    from ttrlab.sweep.store import ResultStore

    rng = np.random.default_rng(7)
    settings = ProbeSettings(n=16, steps=3, seed=0)
    db, probes = tmp_path / "runs.sqlite", tmp_path / "probes.jsonl"
    with ResultStore(db) as store, probes.open("w") as out:
        for rank in range(1, 9):
            base = {"task": "sst2", "model": "minilm", "method": "lora", "rank": rank, "attack": "bpa", "lr_preset": "cpu"}
            for seed in (0, 1):
                for rate, asr in ((0.0, 0.05), (0.01, 0.05 + rank / 10 + rng.normal(0, 0.01))):
                    config = RunConfig.load({**base, "rate": rate, "seed": seed})
                    result = {"metrics": {"asr": asr, "clean": {"accuracy": 0.9}}, "train": {"final_loss": 0.3}}
                    store.record(sweep_id=None, kind="train", run_key=config.run_key(), config=config.resolved(),
                                 result=result, seconds=50.0)
            poisoned = RunConfig.load({**base, "rate": 0.01, "seed": 0}).resolved()
            theory = {k: math.exp(rng.normal()) for k in ("m_prime", "m_prime_adapters_only", "ntk_trace",
                                                          "ntk_trace_adapters_only", "fisher_trace")}
            theory.update(grad_inner_abs=math.exp(rank + rng.normal(0, 0.1)), grad_cosine=rng.normal(),
                          fisher_ib_logdet=rng.normal(), fisher_ib_logdet_adapters_only=rng.normal(),
                          fisher_renyi_1_normalized=rng.normal())
            record = {"key": probe_key(poisoned, settings), "config": {"rate": 0.01, "method": "lora"},
                      "probe": {"n": 16, "steps": 3, "seed": 0, "version": PROBE_VERSION}, "theory": theory,
                      "baseline": {"trainable_parameters": 1000 * rank, "update_norm": math.exp(rng.normal()),
                                   "poison_loss": rng.normal(), "poison_loss_drop": rng.normal()},
                      "seconds": 5.0, "theory_seconds": 2.0, "step_seconds": 1.0}
            out.write(json.dumps(record) + "\n")
    return db, probes


def test_calibrate_command_recovers_a_planted_relation_from_a_database(tmp_path):
    """End to end: `ttrlab advise --calibrate` finds the planted predictor and not the noise."""
    from ttrlab.cli import main

    db, probes = _planted_database(tmp_path)
    table = tmp_path / "table.json"
    assert main(["advise", "--calibrate", "--db", str(db), "--probes", str(probes), "--cached-only",
                 "--target", "asr_lift", "--json", str(table)]) == 0
    models = json.loads(table.read_text())["targets"]["asr_lift"]["models"]
    assert models["grad_alignment"]["n"] == 8 and models["grad_alignment"]["rho"] > 0.9
    assert models["grad_alignment"]["within"]["sst2 bpa 0.01"]["rho"] > 0.9
    assert models["poison_loss"]["rho"] < 0.9
    assert models["rate"]["within"]["sst2 bpa 0.01"]["rho"] is None  # constant within the set


def test_the_published_calibration_table_is_what_the_stored_probes_give(tmp_path, capsys):
    """docs/advise/calibration_paper_cpu.md (quoted in docs/advise.md) is regenerated from the
    published database and the stored probes, so no number in it is typed by hand."""
    import shutil

    from ttrlab.cli import main

    copy = tmp_path / "paper_cpu.sqlite"  # opening a store may write (WAL); never touch the published file
    shutil.copyfile(REPO / "docs" / "results" / "paper_cpu.sqlite", copy)
    assert main(["advise", "--calibrate", "--db", str(copy), "--probes",
                 str(REPO / "docs" / "advise" / "probes_paper_cpu.jsonl"), "--cached-only"]) == 0
    printed = capsys.readouterr().out
    published = (REPO / "docs" / "advise" / "calibration_paper_cpu.md").read_text(encoding="utf-8")
    table = [line for line in published.splitlines() if line.startswith("|")]
    assert table and all(line in printed.splitlines() for line in table)


def test_the_report_shows_the_advisor_only_when_given_stored_probes(tmp_path, capsys):
    """`ttrlab report --probes FILE`: the Advisor section holds the held-out table `advise
    --calibrate` prints (the same rows), computes no probe; without --probes there is no section and
    no advisor.md; a --probes that is not a file is one line, exit 2, and no report folder."""
    from ttrlab.cli import main

    db, probes = _planted_database(tmp_path)
    assert main(["advise", "--calibrate", "--db", str(db), "--probes", str(probes), "--cached-only"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| grad_alignment")]
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "with"), "--probes", str(probes)]) == 0
    page = (tmp_path / "with" / "index.html").read_text(encoding="utf-8")
    assert 'id="advisor"' in page and "grad_alignment" in page
    assert printed and printed[0] in (tmp_path / "with" / "advisor.md").read_text(encoding="utf-8")
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "without")]) == 0
    assert 'id="advisor"' not in (tmp_path / "without" / "index.html").read_text(encoding="utf-8")
    assert not (tmp_path / "without" / "advisor.md").exists()
    capsys.readouterr()
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "bad"), "--probes", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--probes" in err and "is not a file" in err and "\n" not in err and not (tmp_path / "bad").exists()
