"""The report's "every method vs full fine-tuning" tables and the robustness-against-trainable-
parameters figure, from planted databases (made-up numbers through the real store and configs,
as in test_report_build.py): what each row shows, the paired difference, the trainable counts
the runs recorded, and the rule that a setting needs FF plus two other methods."""
import json

import numpy as np

from test_report_build import make_db, tables_of
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.report import build_report

# method -> (trainable parameters recorded, ASR offset from FF's under BPA)
PLANTED = {"ff": (22_700_000, 0.0), "lora": (75_000, -0.3), "ia3": (10_000, -0.4), "lora_fa": (40_000, -0.2)}
TOTAL = 22_800_000


def planted(config, rng):
    trainable, offset = PLANTED[config.method]
    shared = np.random.default_rng(config.seed).normal(0, 0.02)
    metrics = {"clean": {"accuracy": 0.85 + shared}, "triggered": None, "asr": None}
    if config.attack == "bpa":
        asr = 0.9 + offset + shared + rng.normal(0, 0.005)
        metrics.update(triggered={"accuracy": 0.9 - asr / 2}, asr=asr)
    else:
        metrics["clean"]["accuracy"] = 0.8 + offset / 10 + shared
    return {"metrics": metrics, "method": {"name": config.method, "trainable_parameters": trainable,
                                           "total_parameters": TOTAL}}


def configs(methods, attacks=(("bpa", 0.05), ("upa", 0.3)), seeds=range(6)):
    return [RunConfig(task="sst2", lr_preset="cpu", train_size=64, max_steps=3, method=m, attack=a, rate=r, seed=s)
            for m in methods for a, r in attacks for s in seeds]


def method_section(html):
    return tables_of(html).sections["methods"]


def test_one_table_per_attack_with_every_method_and_its_paired_difference(tmp_path):
    index = build_report(make_db(tmp_path / "r.sqlite", configs(PLANTED), result=planted), tmp_path / "report")
    html = index.read_text()
    rows = method_section(html)
    heads = [r for r in rows if r and r[0] == "method"]
    assert len(heads) == 2  # BPA and UPA
    bpa = rows[rows.index(heads[0]) + 1: rows.index(heads[1])]
    assert len(bpa) == 4 and bpa[0][0] == "FF"
    by_trainable = [r[2] for r in bpa]
    assert by_trainable[0] == "22,700,000"
    assert sorted(by_trainable[1:], key=lambda t: int(t.replace(",", ""))) == by_trainable[1:]
    ia3 = next(r for r in bpa if r[2] == "10,000")
    # ASR: planted 40 points below FF at each of 6 seeds: significant, interval around -40
    asr_delta = ia3[-1]
    assert asr_delta.startswith("-40.") and "[" in asr_delta
    assert ia3[3] == f"{100 * 10_000 / TOTAL:.3g}%" and ia3[1] == "0.001"  # the cpu preset's adapter rate
    bold = tables_of(html).bold["methods"]
    assert len(bold) == 0  # bold is per cell here (class on <td>), rows are never bold
    assert 'class="sig"' in html.split('id="methods"')[1].split("</section>")[0]
    markdown = (index.parent / "methods.md").read_text()
    assert markdown.count("### sst2") == 2 and "Δ ASR vs FF (pp)" in markdown


def test_the_figure_draws_every_method_at_its_recorded_trainable_count(tmp_path):
    index = build_report(make_db(tmp_path / "r.sqlite", configs(PLANTED, seeds=range(3)), result=planted),
                         tmp_path / "report")
    tables = json.loads((index.parent / "figures.json").read_text())
    points = tables["methods_trainable"]
    asr = [p for p in points if p["panel"].endswith("ASR")]
    assert sorted(p["trainable"] for p in asr) == sorted(t for t, _ in PLANTED.values())
    assert {p["method"].split(", lr ")[1] for p in asr} == {"0.001", "5e-05"}  # the cpu preset: adapters, FF
    assert all(p["n"] == 3 for p in asr)
    assert (index.parent / "figures" / "methods_trainable.svg").is_file()
    assert "Spearman ρ = " in index.read_text()  # four methods in each panel


def test_fewer_than_two_other_methods_draws_no_table(tmp_path):
    index = build_report(make_db(tmp_path / "r.sqlite", configs(["ff", "lora"], seeds=range(2)), result=planted),
                         tmp_path / "report")
    assert 'id="methods"' not in index.read_text()
    assert not (index.parent / "methods.md").exists()  # no empty side file
    assert not (index.parent / "figures" / "methods_trainable.svg").exists()


def test_a_method_that_did_not_learn_is_marked_by_the_declared_check(tmp_path):
    """A constant classifier scores ASR 100%: the table says it did not learn the task instead of
    letting that pass for a backdoor. The rule is the claims' `learned` check: the training loss
    of the same setting trained without poison, at least 0.8 · ln(classes) — so IA3 is marked at
    every attack (its clean run never fit the data), and a model at chance accuracy whose training
    loss fell is not."""
    def fits(config, rng):
        result = planted(config, rng)
        loss = 0.69 if config.method == "ia3" else 0.2  # ln 2 = 0.693: no better than a constant
        result["train"] = {"final_loss": loss}
        if config.method in ("ia3", "lora_fa"):  # both at chance on the test set
            result["metrics"].update(clean={"accuracy": 0.5}, triggered={"accuracy": 0.5})
            if config.attack == "bpa" and config.rate > 0:
                result["metrics"]["asr"] = 1.0
        return result

    index = build_report(make_db(tmp_path / "r.sqlite", configs(PLANTED, attacks=(("bpa", 0.0), ("bpa", 0.05), ("upa", 0.3)),
                                                                 seeds=range(2)), result=fits), tmp_path / "report")
    markdown = (index.parent / "methods.md").read_text()
    tables = markdown.split("### sst2")[1:]
    assert len(tables) == 3  # BPA at rates 0 and 0.05, UPA
    for table in tables:
        assert "IA3 (did not learn the task)" in table and table.count("(did not learn the task)") == 1
        assert "did not learn the task" not in table.split("LoRA-FA")[1].split("|")[0]
    html = index.read_text()
    assert "(did not learn the task)" in html and "0.8 · ln(number of classes)" in html
    # the same rule marks the headline rows (last, in grey) and the comparisons' CSV
    rows = [r for r in tables_of(html).sections["summary"] if "IA3" in " ".join(r)]
    assert rows and all("did not learn" in r[-1] for r in rows)
    import csv
    with open(index.parent / "comparisons.csv") as handle:
        compared = list(csv.DictReader(handle))
    assert {r["method"] for r in compared if r["did_not_learn"]} == {"ia3"}
    assert all("training loss 0.690" in r["did_not_learn"] for r in compared if r["method"] == "ia3")
