"""The report's "defenses on victims of each method" tables, from planted databases (made-up
numbers through the real store and configs, as in test_report_build.py): before → after per
victim method, the detection numbers the runs hold, and the paired FF-vs-LoRA comparison of the
ASR a defense takes off."""
import numpy as np
import pytest

from test_report_build import make_db, tables_of
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.report import build_report

# defense -> (ASR after on FF victims, on LoRA victims); before is 0.9 for both
AFTER = {"spectral": (0.1, 0.6), "strip": (0.3, 0.3)}


def planted(config, rng):
    shared = np.random.default_rng(config.seed).normal(0, 0.02)
    before = 0.9 + shared
    metrics = {"clean": {"accuracy": 0.85 + shared}, "triggered": {"accuracy": 0.5}, "asr": before}
    if config.defense != "none":
        after = AFTER[config.defense][config.method == "lora"] + shared + rng.normal(0, 0.005)
        detection = ({"auroc": 0.97, "precision": 0.6, "recall": 0.9} if config.defense == "spectral"
                     else {"frr": 0.05, "far": 0.2, "clean_accuracy_before_evaluated": 0.7})  # screened a subset
        metrics = {"clean": {"accuracy": 0.84 + shared}, "triggered": {"accuracy": 0.8}, "asr": after,
                   "defense": {"asr_before": before, "clean_accuracy_before": 0.85 + shared, **detection}}
    return {"metrics": metrics}


def arrow(text):
    """'90.42 ± 2.03 → 59.97 ± 2.03' → (90.42, 59.97)"""
    before, after = text.split("→")
    return float(before.split()[0]), float(after.split()[0])


def configs(seeds):
    return [RunConfig(task="sst2", lr_preset="cpu", train_size=64, max_steps=3, attack="bpa", rate=0.05,
                      method=m, defense=d, seed=s)
            for m in ("ff", "lora") for d in ("none", *AFTER) for s in seeds]


def test_before_after_per_victim_and_the_paired_difference_of_what_the_defense_took_off(tmp_path):
    index = build_report(make_db(tmp_path / "r.sqlite", configs(range(6)), result=planted), tmp_path / "report")
    html = index.read_text()
    rows = tables_of(html).sections["defenses"]
    head = next(r for r in rows if r and r[0] == "defense")
    assert head[1] == "FF: ASR before → after" and head[4].startswith("LoRA")
    body = {r[0].split()[0]: r for r in rows[rows.index(head) + 1:]}
    assert list(body) == ["spectral", "strip"]  # registry order; 'none' is no row
    spectral = body["spectral"]
    assert arrow(spectral[1]) == pytest.approx((90, 10), abs=3)  # FF victims
    assert arrow(spectral[4]) == pytest.approx((90, 60), abs=3)  # LoRA victims
    assert arrow(spectral[2]) == pytest.approx((85, 84), abs=3)  # clean accuracy
    assert "AUROC 0.970" in spectral[3] and "FRR" not in spectral[3]
    # LoRA's reduction is 50 points smaller than FF's at every seed: significant, -50 pp
    assert float(spectral[-1].split()[0]) == pytest.approx(-50, abs=1) and "[" in spectral[-1]
    assert abs(float(body["strip"][-1].split()[0])) < 1
    assert "FRR 0.050" in body["strip"][3]
    assert arrow(body["strip"][2])[0] == pytest.approx(70)  # before on the screened subset, like after
    assert "### sst2" in (index.parent / "defenses.md").read_text()


def test_few_seeds_say_n_too_small_and_no_defended_run_draws_nothing(tmp_path):
    index = build_report(make_db(tmp_path / "a.sqlite", configs(range(2)), result=planted), tmp_path / "a")
    rows = tables_of(index.read_text()).sections["defenses"]
    assert all("n too small" in r[-1] for r in rows if r and r[0].split()[0] in AFTER)
    undefended = [c for c in configs(range(2)) if c.defense == "none"]
    index = build_report(make_db(tmp_path / "b.sqlite", undefended, result=planted), tmp_path / "b")
    assert 'id="defenses"' not in index.read_text() and not (index.parent / "defenses.md").exists()
