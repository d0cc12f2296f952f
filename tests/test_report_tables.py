"""What the report's tables rest on: the paper's numbers (paper_numbers.yaml, checked against the
paper's full text where the shared folder has it, and against the registries) and the metric
registry that says which side of a comparison is better."""
import re
from pathlib import Path

import pytest

from ttrlab.attacks import ATTACKS
from ttrlab.evaluation import METRICS
from ttrlab.methods import METHODS
from ttrlab.report.tables import paper_numbers, paper_row

PAPER_TEXT = Path(__file__).resolve().parents[2] / "shared" / "paper" / "lora-training-time-robustness-icml2025.txt"


@pytest.fixture(scope="module")
def paper_lines():
    if not PAPER_TEXT.is_file():
        pytest.skip(f"the paper's text is not at {PAPER_TEXT}")
    # the extracted text mixes plain "89.14 ±1.86" with LaTeX "$91.78 {\pm} 0.47$"
    text = PAPER_TEXT.read_text(encoding="utf-8").replace("{\\pm}", "±").replace("$", "")
    return [" ".join(line.split()) for line in text.splitlines()]


def test_table_e1_numbers_are_the_papers(paper_lines):
    table = paper_numbers()["table_e1"]
    assert len(table["rows"]) == 8
    for row in table["rows"]:
        name = f"{row['label']}({METHODS.get(row['method']).label})"  # the paper's row name, e.g. MT(FF)
        line = next(line for line in paper_lines if line.startswith(name + " "))
        pairs = [(float(m), float(s)) for m, s in re.findall(r"(\d+\.\d+) ?± ?(\d+\.\d+)", line)]
        assert pairs == list(zip(row["mean"], row["std"])), name


def test_table_3_numbers_are_the_papers(paper_lines):
    start = paper_lines.index("Backdoor Method IsLoRA ASR")
    printed = {tuple(line.split()[:2]): float(line.split()[2]) for line in paper_lines[start + 1:start + 7]}
    table = paper_numbers()["table_3"]
    assert {(r["label"], METHODS.get(r["method"]).label): r["mean"][0] for r in table["rows"]} == printed
    assert "2%" in table["setting"] and "LLaMA-3.2-3B" in table["setting"]


def test_table_2_numbers_are_the_papers(paper_lines):
    table = paper_numbers()["table_2"]
    labels = {"gaussian": "GI", "xavier_normal": "XNI"}
    printed = [line for line in paper_lines if line.split(" ")[0] in labels.values() and "±" in line]
    assert len(printed) == len(table["rows"]) == 12
    for row, line in zip(table["rows"], printed):
        label, k, rate = line.split(" ")[:3]
        assert (labels[row["init"]], float(k), float(rate.rstrip("%")) / 100) == (label, row["k"], row["rate"])
        pairs = [(float(m), float(s)) for m, s in re.findall(r"(\d+\.\d+) ?± ?(\d+\.\d+)", line)]
        assert pairs == list(zip(row["mean"], row["std"])), line


def test_table_2_rows_match_on_strategy_k_and_clean_or_backdoored():
    from ttrlab.report.tables import paper_table2_row

    assert paper_table2_row("xavier_normal", 0.333, True)["mean"][0] == 91.26  # the paper prints k = 0.33
    assert paper_table2_row("gaussian", 2.0, False)["mean"][0] == 93.07
    assert paper_table2_row("kaiming_uniform", 1 / 3, True) is None and paper_table2_row("gaussian", 0.5, True) is None


def test_every_claim_quotes_the_paper(paper_lines):
    """Each claim's quote is the paper's words (its parts around "..." appear in the text)."""
    from ttrlab.report.claims import load_claims

    text = " ".join(paper_lines).replace("*", "")
    for claim in load_claims().claims:
        for part in claim.quote.split(" ... "):
            assert part.strip().rstrip(".") in text, (claim.id, part)


def test_paper_rows_name_registered_attacks_of_the_right_task_type():
    numbers = paper_numbers()
    for row in numbers["table_e1"]["rows"]:
        attack = ATTACKS.get(row["attack"])
        assert attack.is_backdoor() and "classification" in attack.task_types
    for row in numbers["table_3"]["rows"]:
        assert "generation" in ATTACKS.get(row["attack"]).task_types
    assert all(METHODS.get(r["method"]) for t in ("table_e1", "table_3") for r in numbers[t]["rows"])
    assert numbers["table_e1"]["metrics"] == ["triggered.accuracy", "triggered.precision", "triggered.recall",
                                              "triggered.f1"]


def test_table_3_rows_are_the_jailbreak_task_and_match_on_it():
    from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS
    from ttrlab.report.aggregate import Cell

    rows = paper_numbers()["table_3"]["rows"]
    assert {r["task"] for r in rows} == {"jailbreak"} and all(r["task"] in GENERATIVE_TASKS for r in rows)

    def cell(config):
        return Cell("generative", "x", config)

    jailbreak = cell({"task": "jailbreak", "attack": "badnet", "method": "ff"})
    assert paper_row("table_3", jailbreak)["mean"] == [90.91]
    assert paper_row("table_3", cell({"task": "refusal", "attack": "badnet", "method": "ff"})) is None
    assert paper_row("table_3", cell({"attack": "badnet", "method": "lora"}))["mean"] == [84.85]  # no task: the default
    assert paper_row("table_3", cell({"task": "jailbreak", "attack": "mtba", "method": "ff"})) is None
    # Table E.1's rows name no task: any task matches
    assert paper_row("table_e1", Cell("train", "y", {"task": "qnli", "attack": "mt", "method": "ff"}))["label"] == "MT"


@pytest.mark.parametrize("name,higher", [
    ("clean.accuracy", True), ("clean.f1", True), ("clean.recall", True), ("triggered.accuracy", True),
    ("triggered.f1", True), ("triggered.precision", None), ("triggered.recall", None), ("asr", False),
    ("extra.subsets.accuracy", True), ("extra.apple+banana.target_rate", False), ("extra.subsets.recall", None),
    ("asr_no_trigger", False), ("utility_perplexity", False), ("utility_rouge_l", True),
    ("clean_accuracy_drop", False), ("m_prime", None), ("fisher_ib_logdet", None), ("extra.a.b.accuracy", None),
])
def test_metric_directions(name, higher):
    info = METRICS.info(name)
    assert info.higher_is_better is higher and info.name == name
    assert info.summary


def test_every_headline_metric_is_registered_with_a_direction():
    for name in ATTACKS.registered():
        attack = ATTACKS.get(name)
        for task_type in attack.task_types:
            for metric in attack.headline_metrics(task_type):
                assert metric in METRICS and METRICS.info(metric).higher_is_better is not None, (name, metric)
        measure = attack.robustness_measure()
        assert measure is None or METRICS.info(measure).higher_is_better is False
