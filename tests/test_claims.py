"""The declared claims decided on planted databases whose truth is known (made-up numbers through
the real store and configs, as in test_report_build.py):

- a pseudo-replicated design — six rates per seed sharing the seed's draw, no effect across seeds —
  is not called significant, though pooling its 18 rows as independent would call it so;
- a real seed-level effect (LoRA's backdoor lift 30 points below FF's in every seed) is found;
- a claim of no effect with a wide seed spread reads *inconclusive*, never "no effect";
- a task neither method learned (training loss of a constant predictor) and a backdoor that did
  not implant are left out and named, and the verdict without those checks is shown too;
- a stale run (an XNI run stored under its key from before the init fix) is left out;
- Fig. 3 is described from real spectra, not tested.
"""
import hashlib
import json
import math

import numpy as np
import pytest

from test_report_build import make_db
from ttrlab.cli import main
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.report import claims, stats
from ttrlab.report.aggregate import build_cells
from ttrlab.report.claims.decide import (
    AS_PAPER,
    DESCRIBED_FAILS,
    DESCRIBED_HOLDS,
    NOT_TESTABLE,
    UNDECIDED_OPPOSITE,
    UNDECIDED_SAME,
)
from ttrlab.report.claims import load_claims
from ttrlab.report.claims.declared import parse
from ttrlab.sweep.store import FINISHED, ResultStore

SEEDS = (0, 1, 2)
UPA_RATES = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35)
SEED_SHIFT = {0: 0.03, 1: -0.01, 2: 0.02}  # LoRA − FF under UPA: the seed's draw, shared by its rates
SEED_NOISE = {0: 0.004, 1: -0.006, 2: 0.002}
LEARNED_LOSS, CONSTANT_LOSS = 0.40, 0.62  # a constant predictor of CoLA's 69% majority scores 0.61
NOT_IMPLANTED_RATE = 0.005


def planted(config, rng):
    tiny = rng.normal(0, 0.0005)  # each run's own noise, far below the seeds' spread
    loss = CONSTANT_LOSS if config.task == "cola" else LEARNED_LOSS
    acc = 0.85 + SEED_NOISE[config.seed] + tiny
    metrics = {"clean": {"accuracy": acc, "f1": acc}, "triggered": None, "asr": None}
    if config.attack == "upa":
        acc = 0.80 - config.rate * 0.2 + (SEED_SHIFT[config.seed] if config.method == "lora" else 0.0) + tiny
        metrics["clean"] = {"accuracy": acc, "f1": acc}
    elif config.attack == "bpa":
        clean_asr = 0.15 + SEED_NOISE[config.seed]
        if config.rate == 0:
            asr = clean_asr
        elif config.rate == NOT_IMPLANTED_RATE:  # nothing implants in either arm
            asr = clean_asr + 0.02
        else:  # FF implants fully, LoRA 30 points less, in every seed
            asr = (0.95 if config.method == "ff" else 0.65) + SEED_NOISE[config.seed] + tiny
        # the backdoor costs untriggered accuracy by a seed-dependent amount: mean 0, spread 3 points
        acc += {0: 0.03, 1: -0.035, 2: 0.004}[config.seed] if config.rate > 0 else 0.0
        metrics["clean"] = {"accuracy": acc, "f1": acc}
        metrics["asr"] = asr
        metrics["triggered"] = {"accuracy": acc - asr / 2, "f1": acc - asr / 2}
    return {"metrics": metrics, "train": {"final_loss": loss}}


def configs():
    base = dict(lr_preset="cpu", train_size=64, max_steps=3)
    out = []
    for seed in SEEDS:
        for method in ("ff", "lora"):
            for task in ("sst2", "cola"):
                out.append(RunConfig(**base, task=task, method=method, attack="bpa", rate=0.0, seed=seed))
                out += [RunConfig(**base, task=task, method=method, attack="upa", rate=r, seed=seed) for r in UPA_RATES]
            for rate in (NOT_IMPLANTED_RATE, 0.02, 0.05):
                out.append(RunConfig(**base, task="sst2", method=method, attack="bpa", rate=rate, seed=seed))
    return out


def cells_of(db):
    with ResultStore(db, create=False) as store:
        return build_cells(store.runs(status=FINISHED))


@pytest.fixture(scope="module")
def planted_db(tmp_path_factory):
    return make_db(tmp_path_factory.mktemp("claims") / "r.sqlite", configs(), result=planted)


@pytest.fixture(scope="module")
def verdicts(planted_db):
    v = claims.check(cells_of(planted_db))
    return v, {d.claim.id: d for d in v.decisions}, {d.claim.id: d for d in v.without_checks}


def test_a_pseudo_replicated_design_with_no_seed_level_effect_is_not_significant(verdicts):
    _, by_id, _ = verdicts
    fig1 = by_id["fig1-sst2"]
    assert fig1.verdict == UNDECIDED_SAME or fig1.verdict == "undecided (opposite direction)"
    assert fig1.test.n == 3  # three units (SST-2 × 3 seeds), not 18 rate × seed pairs
    assert fig1.test.mean == pytest.approx(np.mean(list(SEED_SHIFT.values())), abs=1e-3)
    assert fig1.p_adj > 0.05 and fig1.test.p_t > 0.05
    # what pooling the 18 rows as independent pairs would have said — the test can fail
    pooled = stats.unit_test([value for _, _, value in fig1.evidence.rows])
    assert len(fig1.evidence.rows) == 18 and pooled.p_t < 0.01


def test_a_real_seed_level_effect_is_found(verdicts):
    _, by_id, _ = verdicts
    fig2 = by_id["fig2"]
    assert fig2.verdict == AS_PAPER
    assert fig2.test.n == 3 and fig2.test.mean == pytest.approx(-0.30, abs=0.002)
    assert fig2.p_seq < fig2.p_adj < 0.05  # sequential and Holm corrections applied, still decided
    # each arm is measured against its own clean run: the lifts, not the raw ASRs
    assert fig2.treatment == pytest.approx(0.65 - 0.15, abs=0.01) and fig2.baseline == pytest.approx(0.80, abs=0.01)


def test_no_effect_with_a_wide_interval_is_inconclusive_not_no_effect(verdicts):
    _, by_id, _ = verdicts
    for claim in ("fig8-ff", "fig8-lora"):
        decision = by_id[claim]
        assert decision.verdict.startswith("inconclusive (the design could only have seen ≥")
        assert decision.test.ci_low < -0.02 < 0.02 < decision.test.ci_high  # the interval covers ± the margin
    assert by_id["fig8"].verdict.startswith("inconclusive")  # the intersection of the two


def test_a_task_neither_method_learned_and_a_backdoor_that_did_not_implant_are_left_out(verdicts):
    _, by_id, without = verdicts
    cola = by_id["fig1-cola"]
    assert cola.verdict == NOT_TESTABLE and "did not learn the task" in cola.why and "training loss 0.620" in cola.why
    # without the declared checks the constant classifiers are compared anyway: the sensitivity column
    assert without["fig1-cola"].verdict != NOT_TESTABLE
    fig2 = by_id["fig2"]
    assert any("did not implant" in why and setting == "sst2 bpa 0.005" for why, setting in fig2.evidence.excluded)
    assert {setting for _, setting, _ in fig2.evidence.rows} == {"sst2 bpa 0.02", "sst2 bpa 0.05"}
    assert len({setting for _, setting, _ in without["fig2"].evidence.rows}) == 3


def test_what_the_database_lacks_is_not_testable_and_says_why(verdicts):
    v, by_id, _ = verdicts
    assert by_id["table3"].verdict == NOT_TESTABLE and "holds no runs" in by_id["table3"].why
    assert by_id["fig3-rank"].verdict == NOT_TESTABLE
    figures = {d.claim.figure for d in v.decisions}
    assert figures == {str(n) for n in range(1, 13)} | {"table2", "table3", "table_e1"}
    assert "primary claims decided after correction" in v.headline()


def test_units_needed_and_their_price_for_an_undecided_claim(verdicts):
    _, by_id, _ = verdicts
    fig1 = by_id["fig1"]
    assert not fig1.decided
    if fig1.seeds_needed is not None:
        assert fig1.seeds_needed in load_claims().sequential.looks and fig1.seeds_needed > 3
        assert fig1.hours_to_decide() > 0  # the planted runs record 2 s each
    assert by_id["fig2"].seeds_needed is None  # decided: nothing to buy


def test_report_prints_the_claims_file_and_the_verdicts(planted_db, tmp_path, capsys):
    assert main(["report", "--db", str(planted_db), "--out", str(tmp_path / "report"), "--compare-paper"]) == 0
    printed = capsys.readouterr().out
    declared = load_claims()
    assert f"version {declared.version}, sha256 {declared.sha256[:16]}" in printed
    assert "primary claims decided after correction" in printed and AS_PAPER in printed
    html = (tmp_path / "report" / "index.html").read_text()
    assert 'id="paper"' in html and declared.sha256[:16] in html
    assert (tmp_path / "report" / "paper_comparison.csv").read_text().count("\n") == 1 + len(declared.claims)


def test_a_stale_run_is_left_out(tmp_path):
    """An XNI run stored under the key it had before XNI followed the official code is not the
    run its config names now: the report leaves it out instead of counting it."""
    config = RunConfig(task="sst2", lr_preset="cpu", train_size=64, max_steps=3, method="lora", init="xavier_normal",
                       init_scale=1.0, attack="bpa", rate=0.0, seed=0)
    values = config.identity_values()
    values.pop("init_revision")
    old_key = hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:24]
    db = tmp_path / "r.sqlite"
    with ResultStore(db) as store:
        for key in (old_key, config.run_key()):
            store.record(sweep_id=None, kind="train", run_key=key, config=config.to_dict(),
                         result={"metrics": {"clean": {"accuracy": 0.8}}}, seconds=1.0)
        runs = store.runs(status=FINISHED)
    assert len(runs) == 2 and len(build_cells(runs)) == 1 and build_cells(runs)[0].seeds == [0]


def test_a_claim_of_no_effect_must_declare_its_margin():
    declared = load_claims()
    entry = {"id": "x", "figure": "1", "role": "secondary", "of": "fig1", "claim": "c", "design": "contrast",
             "baseline": "full", "metric": "clean.accuracy", "expect": "none"}
    data = {"version": 1, "alpha": 0.05, "claims": [{**c.__dict__, "checks": list(c.checks), "of_claims": list(c.of_claims)}
                                                      for c in declared.claims if c.id == "fig1"] + [entry]}
    with pytest.raises(Exception, match="declares its equivalence margin"):
        parse(data, "test", "0")


def test_fig3_is_described_from_real_spectra(tmp_path):
    """H′₁ of AᵀA computed for real (no model): it rises with r where the theorem's assumptions
    hold (k < 1) and falls outside; in k it peaks at 1/3 (≈ 1/e), so "grows with k" fails."""
    spec = tmp_path / "fig3.yaml"
    spec.write_text("name: fig3-test\nkind: theory\nseeds: [0, 1]\n"
                    "base: {quantity: spectrum, method: lora, init: kaiming_uniform, alpha: 16, fan_in: 256}\n"
                    "axes: {rank: [4, 16, 64], init_scale: [0.01, 0.1, null, 0.6, 1.0, 2.0]}\n")
    db = tmp_path / "t.sqlite"
    assert main(["sweep", str(spec), "--db", str(db), "--executor", "inline", "--quiet"]) == 0
    by_id = {d.claim.id: d for d in claims.decide(cells_of(db))}
    assert by_id["fig3-rank"].verdict == DESCRIBED_HOLDS
    assert "falls at init_scale 1, 2" in by_id["fig3-rank"].evidence.description
    assert by_id["fig3-variance"].verdict == DESCRIBED_FAILS
    assert "peaks at init_scale 0.3333" in by_id["fig3-variance"].evidence.description
    assert math.isnan(by_id["fig3-rank"].p_adj)  # described, never tested


def test_trends_are_tested_per_unit():
    """A trend's unit value is its mean ρ over its blocks; every unit agreeing exactly leaves t
    undefined, so the sign-flip p (0.25 at 3 units) is what it can claim."""
    result = stats.unit_test([-1.0, -1.0, -1.0])
    assert result.p_t == result.p_sign_flip == pytest.approx(0.25)
    assert UNDECIDED_OPPOSITE != UNDECIDED_SAME
