"""The report's Theory section: Figure 3 rebuilt from stored `quantity: spectrum` runs (computed
for real, small n), theory-vs-measured robustness with Spearman's ρ (checked against
scipy.stats.spearmanr on pairs built here independently), the matching rule (seed by seed;
training-only knobs kept apart), Theorem 3.6 verdicts, escaping, and no section (and no error)
without theory runs. The theory "all" documents and the training metrics are synthetic, written
through the real ResultStore as in test_report_build.py."""
import json
import re

import numpy as np
import pytest
from scipy.stats import spearmanr

from ttrlab.kinds.classification.config import RunConfig
from ttrlab.report import build_report
from ttrlab.report.stats import exact_spearman_p
from ttrlab.kinds.registry import RUN_KINDS
from ttrlab.sweep.store import ResultStore
from ttrlab.kinds.theory.config import TheoryConfig
from ttrlab.theory.information import summarize_spectrum

EVIL = "<img src=x onerror=alert(1)>"
COMMON = dict(task="sst2", model="minilm", train_size=64, max_length=128)
SETTINGS = [("ff", None), ("lora", 4), ("lora", 8), ("lora", 16), ("lora", 64)]
ATTACKS = {"bpa": 0.05, "upa": 0.2}
THEORY_SEEDS, TRAIN_SEEDS = (0, 1), (0, 1, 2)


def lora_knobs(method, rank):
    return {"method": method, **({"rank": rank} if rank else {})}


def theory_document(config: TheoryConfig, rng) -> dict:
    """A result document shaped like compute_theory's (quantity all), with made-up numbers:
    FF's kernel quantities larger than LoRA's, LoRA's growing with the rank, plus noise."""
    run = config
    size = 10.0 if run.method == "ff" else 1.0 + np.log2(run.rank) / 2
    eigenvalues = np.sort(rng.uniform(0.01, 1.0, config.n) * size)[::-1]
    fisher = {"eigenvalues": eigenvalues.tolist(), **summarize_spectrum(eigenvalues)}
    part = "body_only" if run.method == "ff" else "adapters_only"
    metrics = {
        "m_prime": size + rng.normal(0, 0.3), f"m_prime_{part}": size / 2 + rng.normal(0, 0.3),
        "grad_inner_abs": size / 3 + rng.normal(0, 0.2), "grad_cosine": rng.uniform(0, 1),
        "ntk_trace": 50 * size, **{f"fisher_{k}": v for k, v in fisher.items() if k != "eigenvalues"},
        f"fisher_trace_{part}": fisher["trace"] / 2, f"fisher_ib_logdet_{part}": fisher["ib_logdet"] - 1,
    }
    return {
        "kind": "theory", "run_key": config.run_key(), "config": config.to_dict(), "versions": {"torch": "test"},
        "method": {"name": run.method, **({"init_variance_example": {"fan_in": 384, "variance": 1 / (3 * 384)}}
                                          if run.method == "lora" else {})},
        "fisher": {"n": config.n, "groups": {"all": fisher}}, "metrics": metrics,
    }


def train_document(config: RunConfig, rng) -> dict:
    size = 10.0 if config.method == "ff" else 1.0 + np.log2(config.rank) / 2
    clean = config.attack == "none" or config.rate == 0
    acc = 0.9 + rng.normal(0, 0.01) - (0 if clean or config.attack != "upa" else 0.02 * size + rng.normal(0, 0.05))
    asr = float(np.clip(0.05 * size + rng.normal(0, 0.15), 0, 1)) if config.attack == "bpa" else None
    return {"metrics": {"clean": {"accuracy": acc}, "asr": asr}, "versions": {"torch": "test"}}


def write_runs(store, sweep, theory=(), training=()):
    for config, document in theory:
        store.record(sweep_id=sweep, kind="theory", run_key=config.run_key(), config=config.to_dict(),
                     result=document, seconds=1.0)
    for config, document in training:
        store.record(sweep_id=sweep, kind="train", run_key=config.run_key(), config=config.to_dict(),
                     result=document, seconds=2.0)


def theory_and_training(rng, settings=SETTINGS, max_steps=3, attacks=ATTACKS):
    theory, training = [], []
    for method, rank in settings:
        for attack, rate in attacks.items():
            for seed in THEORY_SEEDS:
                config = TheoryConfig.from_dict({**COMMON, **lora_knobs(method, rank), "attack": attack, "rate": rate,
                                                 "n": 8, "seed": seed})
                theory.append((config, theory_document(config, rng)))
            for seed in TRAIN_SEEDS:
                config = RunConfig(**COMMON, **lora_knobs(method, rank), attack=attack, rate=rate, seed=seed,
                                   lr_preset="cpu", max_steps=max_steps)
                training.append((config, train_document(config, rng)))
        for seed in TRAIN_SEEDS:  # the clean run of each setting: BPA at rate 0
            config = RunConfig(**COMMON, **lora_knobs(method, rank), attack="bpa", rate=0.0, seed=seed,
                               lr_preset="cpu", max_steps=max_steps)
            training.append((config, train_document(config, rng)))
    return theory, training


def spectrum_runs():
    kind = RUN_KINDS.get("theory")
    runs = []
    for rank in (4, 8, 16):
        for k in (0.01, None, 1.0):
            config = kind.config_from_dict({"quantity": "spectrum", "rank": rank, "init_scale": k, "fan_in": 64})
            runs.append((config, kind.run(config)))
    return runs


def expected_pairs(theory, training, attack, quantity):
    """Independently of the report: per (method, rank), the mean over seeds held by both sides of
    the theory quantity and of the measured robustness (ASR; UPA: same-seed clean acc − acc)."""
    xs, ys = [], []
    for method, rank in SETTINGS:
        def same(c):
            return c.method == method and (method == "ff" or c.rank == rank)

        t = {c.seed: d["metrics"][quantity] for c, d in theory if same(c) and c.attack == attack}
        if attack == "bpa":
            m = {c.seed: d["metrics"]["asr"] for c, d in training if same(c) and c.attack == "bpa" and c.rate > 0}
        else:
            clean = {c.seed: d["metrics"]["clean"]["accuracy"] for c, d in training if same(c) and c.rate == 0}
            m = {c.seed: clean[c.seed] - d["metrics"]["clean"]["accuracy"] for c, d in training if same(c) and c.attack == "upa"}
        seeds = sorted(set(t) & set(m))
        assert seeds == list(THEORY_SEEDS)  # seed 2 has no theory run: left out
        xs.append(np.mean([t[s] for s in seeds]))
        ys.append(np.mean([m[s] for s in seeds]))
    return xs, ys


def quick_training_figures(monkeypatch):
    """The training figures are drawn and tested in test_report_build.py; here they are drawn as
    empty stubs (their numbers, figures.json, are still computed) to keep this file fast."""
    import ttrlab.report.sections.figures as figures
    import ttrlab.report.sections.varied as varied
    from ttrlab.report.drawing import pyplot

    def stub(figure):
        return pyplot().figure(figsize=(4, 3))

    monkeypatch.setattr(figures, "draw", stub)
    monkeypatch.setattr(varied, "draw", stub)


@pytest.fixture(scope="module")
def theory_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("theory")
    rng = np.random.default_rng(5)
    theory, training = theory_and_training(rng)
    with ResultStore(root / "r.sqlite") as store:
        sweep = store.register_sweep("with-theory", "1" * 24, "name: with-theory\n")
        write_runs(store, sweep, [*theory, *spectrum_runs()], training)
    with ResultStore(root / "train_only.sqlite") as store:
        write_runs(store, store.register_sweep("with-theory", "1" * 24, "name: with-theory\n"), (), training)
    with pytest.MonkeyPatch.context() as monkeypatch:
        quick_training_figures(monkeypatch)
        index = build_report(root / "r.sqlite", root / "report")
        return index, theory, training, build_report(root / "train_only.sqlite", root / "train_only")


def test_theory_section_fig3_and_files(theory_report):
    index, *_ = theory_report
    html = index.read_text()
    out = index.parent
    assert 'id="theory"' in html and 'href="#theory"' in html
    assert (out / "figures" / "fig3.png").stat().st_size > 5000
    svg = (out / "figures" / "fig3.svg").read_text()
    assert "kaiming default k = 1/3" in svg and "LoRA rank r" in svg
    assert html.count('<img src="data:image/svg+xml;base64,') >= 2 + 2  # training figs + Fig. 3 + theory vs measured
    grid = json.loads((out / "theory.json").read_text())["fig3"]["fig3"]
    assert grid["ranks"] == [4, 8, 16] and grid["fan_in"] == 64 and len(grid["scales"]) == 3
    assert 1 / 3 == pytest.approx(grid["scales"][1])  # null init_scale is the kaiming default column
    assert "Theorem 3.4" in html and "9 (r, k) cells" in html


@pytest.mark.parametrize("attack,quantity", [("bpa", "m_prime"), ("bpa", "fisher_ib_logdet"), ("upa", "fisher_trace")])
def test_spearman_equals_scipy_on_the_same_pairs(theory_report, attack, quantity):
    index, theory, training, _ = theory_report
    numbers = json.loads((index.parent / "theory.json").read_text())["theory_vs_measured"]
    assert list(numbers) == ["theory_vs_measured"]  # one training setting, one theory setting
    rows = {r["attack"]: r for r in numbers["theory_vs_measured"]["rows"]}
    assert rows["bpa"]["measure"] == "asr" and rows["upa"]["measure"] == "clean_accuracy_drop"
    panel = next(p for p in rows[attack]["panels"] if p["quantity"] == quantity)
    xs, ys = expected_pairs(theory, training, attack, quantity)
    rho, p = spearmanr(xs, ys)
    assert panel["stats"]["n"] == len(SETTINGS) == 5
    assert panel["stats"]["rho"] == pytest.approx(rho, abs=1e-12)
    assert panel["stats"]["p_value"] == pytest.approx(p, abs=1e-12)
    assert panel["stats"]["p_exact"] == pytest.approx(exact_spearman_p(np.array(xs), np.array(ys)))
    assert sorted(pt["computed"] for pt in panel["points"]) == pytest.approx(sorted(xs))
    assert all(pt["seeds"] == list(THEORY_SEEDS) for pt in panel["points"])
    html = index.read_text()
    assert f"ρ = {rho:.2f}, p = {p:.2g}" in _svg_text(html)  # printed in the figure
    assert re.search(rf"<td( class=\"sig\")?>{re.escape(_fmt3(rho))}</td>", html)  # and in the table


def test_without_head_quantity_uses_each_methods_own_part(theory_report):
    index, theory, *_ = theory_report
    numbers = json.loads((index.parent / "theory.json").read_text())["theory_vs_measured"]["theory_vs_measured"]
    bpa = next(r for r in numbers["rows"] if r["attack"] == "bpa")
    panel = next(p for p in bpa["panels"] if p["quantity"] == "m_prime_without_head")
    ff = next(p for p in panel["points"] if p["key"]["method"] == "ff")
    expected = np.mean([d["metrics"]["m_prime_body_only"] for c, d in theory if c.method == "ff" and c.attack == "bpa"])
    assert ff["computed"] == pytest.approx(expected)


def test_theorem_3_6_verdicts_listed(theory_report):
    index, *_ = theory_report
    html = index.read_text()
    theorem = json.loads((index.parent / "theory.json").read_text())["theorem_3_6"]
    assert len(theorem) == 4 * 2 * 2  # 4 LoRA settings × 2 attacks × 2 seeds, each against FF
    assert "FF/LoRA pairs on the same Fisher sample" in html
    assert {"ib_logdet", "ib_paper", "trace"} <= set(theorem[0]["verdict"]["comparisons"])


def test_training_aggregates_and_figures_unchanged_by_theory_runs(theory_report):
    index, _, _, train_only = theory_report
    assert (index.parent / "figures.json").read_text() == (train_only.parent / "figures.json").read_text()
    assert (index.parent / "comparisons.csv").read_text() == (train_only.parent / "comparisons.csv").read_text()
    import csv

    def rows(folder):
        with open(folder / "aggregates.csv") as handle:
            return list(csv.DictReader(handle))

    alone = rows(train_only.parent)  # its columns: the settings the training cells differ in, the statistics
    assert alone and [{k: r[k] for k in alone[0]} for r in rows(index.parent) if r["kind"] == "train"] == alone


def test_theory_runs_stay_out_of_the_training_figures_and_tables(tmp_path, monkeypatch):
    """A theory run of an attack and init strategy no training run has adds no figure variant,
    no Table 2 or Table E.1 row."""
    quick_training_figures(monkeypatch)
    rng = np.random.default_rng(3)
    config = TheoryConfig.from_dict({**COMMON, "method": "lora", "init": "gaussian", "init_scale": 2.0,
                                     "attack": "cl_bpa", "rate": 0.05, "n": 8, "seed": 0})
    training = [RunConfig(**COMMON, method=m, attack="bpa", rate=r, seed=0, max_steps=3) for m in ("ff", "lora")
                for r in (0.0, 0.05)]
    with ResultStore(tmp_path / "r.sqlite") as store:
        write_runs(store, store.register_sweep("apart", "4" * 24, "name: apart\n"),
                   [(config, theory_document(config, rng))], [(c, train_document(c, rng)) for c in training])
    html = build_report(tmp_path / "r.sqlite", tmp_path / "report").read_text()
    assert 'id="table2"' not in html  # the theory run's init strategy makes no Table 2
    assert "cl_bpa" not in html.split('id="table-e1"')[1].split("</section>")[0]
    assert "cl_bpa" not in html.split('id="figures"')[1].split("</section>")[0]


def test_no_theory_runs_no_section(theory_report):
    _, _, _, train_only = theory_report
    html = train_only.read_text()
    assert 'id="theory"' not in html and "#theory" not in html
    assert not (train_only.parent / "theory.json").exists()


def test_few_points_flagged_training_settings_apart_and_escaped(tmp_path, monkeypatch):
    quick_training_figures(monkeypatch)
    rng = np.random.default_rng(1)
    settings, bpa = SETTINGS[:3], {"bpa": ATTACKS["bpa"]}
    theory, training = theory_and_training(rng, settings, attacks=bpa)
    _, other_steps = theory_and_training(rng, settings, max_steps=7, attacks=bpa)  # another training setting
    unmatched = TheoryConfig.from_dict({**COMMON, "method": "lora", "attack": "bpa", "rate": 0.05, "n": 8, "seed": 9})
    document = theory_document(unmatched, rng)
    document["config"]["task"] = EVIL  # a database written by someone else: strings are data
    with ResultStore(tmp_path / "r.sqlite") as store:
        sweep = store.register_sweep("few", "2" * 24, "name: few\n")
        write_runs(store, sweep, theory, [*training, *other_steps])
        store.record(sweep_id=sweep, kind="theory", run_key="evil", config=document["config"], result=document)
    index = build_report(tmp_path / "r.sqlite", tmp_path / "report")
    html = index.read_text()
    numbers = json.loads((index.parent / "theory.json").read_text())["theory_vs_measured"]
    assert sorted(numbers) == ["theory_vs_measured_a", "theory_vs_measured_b"]  # max_steps 3 and 7 kept apart
    assert {v["training_context"]["max_steps"] for v in numbers.values()} == {3, 7}
    stats = numbers["theory_vs_measured_a"]["rows"][0]["panels"][0]["stats"]
    assert stats["n"] == 3 and stats["informative"] is False and stats["rho"] is not None
    assert "not informative (n &lt; 4)" in html and "not informative (n &lt; 4)" in _svg_text(html)  # SVG is XML
    assert EVIL not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_unmatched_theory_runs_give_a_note_with_escaped_names(tmp_path):
    rng = np.random.default_rng(2)
    config = TheoryConfig.from_dict({**COMMON, "method": "ff", "attack": "bpa", "rate": 0.05, "n": 8, "seed": 0})
    document = theory_document(config, rng)
    document["config"]["task"] = EVIL
    training = [(RunConfig(**COMMON, method="ff", attack="bpa", rate=0.05, seed=0, max_steps=3), None)]
    training = [(c, train_document(c, rng)) for c, _ in training]
    with ResultStore(tmp_path / "r.sqlite") as store:
        sweep = store.register_sweep("unmatched", "3" * 24, "name: unmatched\n")
        store.record(sweep_id=sweep, kind="theory", run_key="evil", config=document["config"], result=document)
        write_runs(store, sweep, (), training)
    html = build_report(tmp_path / "r.sqlite", tmp_path / "report").read_text()
    assert "no training run shares a configuration and seed with a theory run" in html
    assert EVIL not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Fig. 3 skipped" in html  # inside the theory section, which is there: the database holds a theory run


def _svg_text(html: str) -> str:
    import base64

    return "".join(base64.b64decode(b).decode() for b in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html))


def _fmt3(value: float) -> str:
    from ttrlab.report.aggregate import fmt

    return fmt(value, 3)


@pytest.mark.parametrize("theory,training", [
    ("cpu/theory_main.yaml", ["cpu/main.yaml"]),
    ("cpu/theory_rank_variance.yaml", ["cpu/fig4_fig9_fig10_rank.yaml", "cpu/fig5_fig11_fig12_variance.yaml"]),
])
def test_cpu_theory_specs_match_training_specs(theory, training):
    """Every theory point of a shipped CPU spec has a training run of the same configuration and
    seed, and a clean run of that setting and seed (for the UPA accuracy drop)."""
    from pathlib import Path

    from ttrlab.report.matching import ATTACK_KEYS, is_clean, match_key
    from ttrlab.sweep.spec import load_spec

    specs = Path(__file__).resolve().parents[1] / "specs"
    runs = [r.config_dict for path in training for r in load_spec(specs / path).expand().runs]
    trained = {(match_key(c), c["seed"]) for c in runs}
    clean = {(match_key({**c, **dict.fromkeys(ATTACK_KEYS)}), c["seed"]) for c in runs if is_clean(c)}
    points = load_spec(specs / theory).expand().runs
    assert points and all(p.kind == "theory" and p.config.quantity == "all" for p in points)
    for p in points:
        c = p.config_dict
        assert (match_key(c), c["seed"]) in trained, p.label()
        assert (match_key({**c, **dict.fromkeys(ATTACK_KEYS)}), c["seed"]) in clean, p.label()


def test_fig3_spec_spans_the_papers_grid():
    from pathlib import Path

    from ttrlab.sweep.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "cpu" / "theory_fig3.yaml")
    configs = [r.config for r in spec.expand().runs]
    assert {c.rank for c in configs} == {4, 8, 16, 32, 64, 128, 256, 512}
    scales = {c.init_scale for c in configs}
    assert None in scales and min(s for s in scales if s) == 0.001 and max(s for s in scales if s) == 2.0
    assert all(c.quantity == "spectrum" and c.fan_in == 1024 for c in configs)


@pytest.mark.browser
def test_theory_section_in_a_real_browser(theory_report, tmp_path):
    """No console message, and every figure (the theory ones included) decodes in chromium."""
    from test_report_browser import CHROMIUM, PROBE, chromium, sections_in

    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    index = theory_report[0]
    out, console = chromium(index, tmp_path, "--dump-dom")
    assert out.returncode == 0 and console == []
    assert 'id="theory"' in out.stdout and "Theory vs measured" in out.stdout
    probe = index.with_name("probe.html")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", index.read_text())
    probe.write_text(html.replace("</body>", PROBE, 1))
    _, console = chromium(probe, tmp_path, "--dump-dom")
    images = html.count('<img src="data:image/svg+xml;base64,')
    # stubbed training figures are 400 × 300 SVGs (> 100 px): all images must decode
    assert any(f"PROBE images {images}/{images} sections {sections_in(html)}" in line for line in console), console
