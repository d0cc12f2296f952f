"""The dose–response fit (`ttrlab.report.dose_response`) on synthetic data with a planted truth:
it recovers each method's ED50 and their ratio, its seed-bootstrap intervals cover them, and it
tells a count effect from a rate effect across training-set sizes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ttrlab.report.dose_response import (Fit, Observation, count_or_rate, dose_response, dose_response_groups,
                                         dose_response_markdown, fit_logistic)

DOSES = (5, 10, 20, 40, 80, 160)
FLOOR, SLOPE = 0.1, 2.0


def midpoint_for(ed50: float, floor: float = FLOOR, slope: float = SLOPE) -> float:
    p = (0.5 - floor) / (1 - floor)
    return math.exp(math.log(ed50) - math.log(p / (1 - p)) / slope)


def planted(ed50s: dict[str, float], seeds: int = 8, sizes=(2000,), by="count", noise: float = 0.03, rng_seed: int = 1):
    """Runs of each method at each dose (and d = 0), seed noise N(0, noise), ASR clipped to [0, 1].
    `by="rate"`: the truth is in the rate, ED50 given as a count at the first size."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for method, ed50 in ed50s.items():
        truth = Fit(midpoint_for(ed50), SLOPE, FLOOR, 0.0, 0)
        for seed in range(seeds):
            for size in sizes:
                for dose in (0, *DOSES):
                    x = dose if by == "count" else dose * sizes[0] / size  # the rate's effect at size[0]'s scale
                    asr = FLOOR if dose == 0 else float(truth.asr(x))
                    out.append(Observation(method, seed, dose, size, float(np.clip(asr + rng.normal(0, noise), 0, 1))))
    return out


def test_the_fit_recovers_a_planted_ed50_without_noise():
    truth = Fit(midpoint_for(30.0), SLOPE, FLOOR, 0.0, 0)
    fit = fit_logistic(DOSES, truth.asr(DOSES), FLOOR)
    assert fit.ed50 == pytest.approx(30.0, rel=1e-4) and fit.slope == pytest.approx(SLOPE, rel=1e-4)
    assert float(truth.asr([30.0])[0]) == pytest.approx(0.5)


def test_ed50_per_method_and_their_ratio_are_recovered():
    result = dose_response(planted({"ff": 20.0, "lora": 60.0}), boot=100)
    ff, lora = result["ff"], result["lora"]
    assert ff["ed50"] == pytest.approx(20.0, rel=0.05) and lora["ed50"] == pytest.approx(60.0, rel=0.05)
    assert lora["ratio"] == pytest.approx(3.0, rel=0.1) and lora["ratio_interval"][0] > 1.0  # LoRA needs more poison
    assert ff["fit"].floor == pytest.approx(FLOOR, abs=0.02) and ff["failed"] == 0 and ff["seeds"] == 8
    assert ff["ratio"] is None and ff["ratio_interval"] is None  # FF is the reference


# Coverage is a property over data sets, not of one: 8 planted data sets (12 seeds each), each
# interval nominally 95%. A percentile bootstrap over 12 units covers a little less than nominal;
# 6 of 8 is what an interval of about 90% misses with probability 4%, and these draws are fixed.
REALIZATIONS = range(100, 108)


def test_the_seed_bootstrap_intervals_cover_the_planted_ed50_and_ratio():
    covered_ed50 = covered_ratio = 0
    for rng_seed in REALIZATIONS:
        result = dose_response(planted({"ff": 20.0, "lora": 60.0}, seeds=12, rng_seed=rng_seed), boot=100)
        low, high = result["ff"]["ed50_interval"]
        covered_ed50 += low < 20.0 < high
        low, high = result["lora"]["ratio_interval"]
        covered_ratio += low < 3.0 < high
        assert low > 1.0  # a threefold difference is never mistaken for none
    assert covered_ed50 >= 6 and covered_ratio >= 6, (covered_ed50, covered_ratio)


def test_equal_ed50s_give_ratio_intervals_around_one():
    covered = sum(low < 1.0 < high for low, high in (
        dose_response(planted({"ff": 40.0, "lora": 40.0}, seeds=12, rng_seed=rng_seed), boot=100)["lora"]["ratio_interval"]
        for rng_seed in REALIZATIONS))
    assert covered >= 6, covered


def test_count_or_rate_tells_which_one_the_truth_is_in():
    sizes = (500, 2000)
    by_count = count_or_rate(planted({"ff": 20.0}, sizes=sizes, by="count"), boot=100)["ff"]
    by_rate = count_or_rate(planted({"ff": 20.0}, sizes=sizes, by="rate"), boot=100)["ff"]
    assert by_count["verdict"] == "count" and by_count["count_wins_share"] > 0.9
    assert by_rate["verdict"] == "rate" and by_rate["count_wins_share"] < 0.1
    one_size = count_or_rate(planted({"ff": 20.0}), boot=10)["ff"]
    assert one_size["verdict"].startswith("one training-set size")


def test_a_clean_floor_at_or_above_one_half_has_no_ed50():
    assert Fit(10.0, 1.0, 0.6, 0.0, 0).ed50 is None
    assert fit_logistic([5, 5, 5], [0.1, 0.2, 0.3]) is None  # one dose: nothing to fit


def test_the_markdown_reads_stored_documents():
    docs = []
    for o in planted({"ff": 20.0, "lora": 60.0}, seeds=3):
        docs.append({"kind": "train", "config": {"method": o.method, "seed": o.seed, "task": "sst2", "model": "minilm",
                                                  "attack": "bpa"},
                     "data": {"train_examples": o.size}, "poison": {"count": o.count}, "metrics": {"asr": o.asr}})
    text = dose_response_markdown(dose_response_groups(docs, boot=50), boot=50)
    assert "## fine_tune_poison · sst2 · minilm · bpa" in text
    assert "| 2000 | lora | 3 |" in text and "- ff: one training-set size" in text
