"""The dose–response fit (`ttrlab.report.dose_response`) on synthetic data with a planted truth:
it recovers each method's ED50 and their ratio, its seed-bootstrap intervals cover them, and it
tells a count effect from a rate effect across training-set sizes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ttrlab.report.dose_response import (Fit, Observation, count_or_rate, dose_response, dose_response_markdown,
                                         fit_logistic)

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


def test_ed50_per_method_and_their_ratio_are_recovered_with_covering_intervals():
    result = dose_response(planted({"ff": 20.0, "lora": 60.0}), boot=300)
    ff, lora = result["ff"], result["lora"]
    assert ff["ed50"] == pytest.approx(20.0, rel=0.1) and lora["ed50"] == pytest.approx(60.0, rel=0.1)
    assert ff["ed50_interval"][0] < 20.0 < ff["ed50_interval"][1]
    assert lora["ed50_interval"][0] < 60.0 < lora["ed50_interval"][1]
    assert lora["ratio"] == pytest.approx(3.0, rel=0.15)
    low, high = lora["ratio_interval"]
    assert low < 3.0 < high and low > 1.0  # LoRA needs more poison, and the interval says so
    assert ff["fit"].floor == pytest.approx(FLOOR, abs=0.02) and ff["failed"] == 0 and ff["seeds"] == 8


def test_equal_ed50s_give_a_ratio_interval_around_one():
    lora = dose_response(planted({"ff": 40.0, "lora": 40.0}, rng_seed=2), boot=300)["lora"]
    assert lora["ratio_interval"][0] < 1.0 < lora["ratio_interval"][1]


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
    text = dose_response_markdown(docs, boot=50)
    assert "## fine_tune_poison · sst2 · minilm · bpa" in text
    assert "| 2000 | lora | 3 |" in text and "- ff: one training-set size" in text
