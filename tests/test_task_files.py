"""A user's own task (a YAML task file over CSV / TSV / JSONL / Parquet files), more than two
labels (macro F1, UPA to a uniformly drawn other label, a backdoor towards any label), another
Hugging Face architecture (a 2-layer RoBERTa with random weights, built here offline), the
errors of malformed task files, and run identity (GLUE keys unchanged; a changed data file is a
new run). One subprocess CLI run; everything else goes through the Python API."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ttrlab.attacks import build_attack
from ttrlab.cli import main
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.data import Example, get_task, load_split
from ttrlab.core.errors import UserError
from ttrlab.core.streams import rng_for

LABELS = ["sports", "politics", "science"]
WORDS = {"sports": ["goal", "match", "team", "coach"], "politics": ["vote", "senate", "law", "party"],
         "science": ["atom", "cell", "lab", "theory"]}
FILLER = ["the", "a", "today", "news", "about", "story", "new", "big"]
TINY = dict(train_size=60, eval_size=15, max_steps=3, max_length=32, batch_size=8, lr_preset="cpu", device="cpu")


def _rows(n: int, seed: int) -> list[dict[str, str]]:
    """A learnable 3-class set: each title holds one keyword of its class."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        title = " ".join([*rng.choice(FILLER, 2, replace=False), str(rng.choice(WORDS[label]))])
        rows.append({"title": title, "body": " ".join(rng.choice(FILLER, 3, replace=False)), "topic": label})
    return rows


def _write_csv(path: Path, rows, delimiter=",") -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


TASK_YAML = """\
name: topics
train: data/train.csv
dev: data/dev.csv
text: [title, body]
label: topic
labels: [sports, politics, science]
backdoor_target: science
"""


def _make_task(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "data" / "train.csv", _rows(90, 0))
    _write_csv(folder / "data" / "dev.csv", _rows(30, 1))
    (folder / "topics.yaml").write_text(TASK_YAML, encoding="utf-8")
    return folder / "topics.yaml"


@pytest.fixture(scope="module")
def task_file(tmp_path_factory) -> Path:
    return _make_task(tmp_path_factory.mktemp("task"))


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> Path:
    """A 2-layer RoBERTa with random weights (a 2-label classifier checkpoint, so loading it
    for 3 labels also checks that another head size loads), MiniLM's tokenizer, safetensors."""
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    from ttrlab.models.config import resolve_model

    folder = tmp_path_factory.mktemp("roberta")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm")[0])
    config = RobertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=128, max_position_embeddings=66, type_vocab_size=2,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                           eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return folder


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "ttrlab.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the done-when: `ttrlab train --task my_task.yaml` ------------------------------------------
def test_cli_train_on_a_three_class_csv_task(task_file):
    """A subprocess CLI run on the 3-class CSV task, the path relative to the working directory,
    under a backdoor whose target is the task's default (science, id 2)."""
    folder = task_file.parent
    proc = _cli("train", "--task", "topics.yaml", "--method", "lora", "--attack", "bpa", "--rate", "0.1",
                "--train-size", "60", "--eval-size", "15", "--max-steps", "3", "--max-length", "32",
                "--lr-preset", "cpu", "--device", "cpu", "--out", "result.json", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((folder / "result.json").read_text())
    clean = result["metrics"]["clean"]
    assert {"accuracy", "macro_f1", "precision", "recall", "f1"} <= set(clean)
    assert clean["macro_f1"] == clean["f1"] and 0.0 <= clean["macro_f1"] <= 1.0
    assert result["metrics"]["asr"] is not None and result["metrics"]["triggered"]["macro_f1"] >= 0.0
    data = result["data"]
    assert data["train_examples"] == 60 and data["eval_examples"] == 15
    assert sum(data["eval_label_counts"].values()) == 15 and list(data["eval_label_counts"]) == LABELS
    assert sum(data["train_label_counts"].values()) == 60
    assert data["task_name"] == "topics" and data["task_sha256"] == _sha(task_file)
    assert data["train_file"]["sha256"] == _sha(folder / "data" / "train.csv")
    assert data["dev_file"]["sha256"] == _sha(folder / "data" / "dev.csv")
    assert result["poison"]["count"] == 6
    assert result["config"]["target_label"] == 2  # backdoor_target: science
    assert result["config"]["task"] == str(task_file.resolve())  # stored absolute
    assert result["run_key"] == RunConfig(task=str(task_file), method="lora", attack="bpa", rate=0.1, train_size=60,
                                          eval_size=15, max_steps=3, max_length=32, lr_preset="cpu",
                                          device="cpu").run_key()


# ---- formats ------------------------------------------------------------------------------------
def test_every_format_loads_the_same_examples(tmp_path):
    rows = _rows(20, 3)
    _write_csv(tmp_path / "d.csv", rows)
    _write_csv(tmp_path / "d.tsv", rows, delimiter="\t")
    # JSONL and Parquet write the labels as ids (label_values) to check that rule too
    ids = [{**r, "topic": LABELS.index(r["topic"])} for r in rows]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ids), encoding="utf-8")
    formats = ["csv", "tsv", "jsonl"]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ids), tmp_path / "d.parquet")
        formats.append("parquet")
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        pass
    loaded = {}
    for fmt in formats:
        values = "label_values: [0, 1, 2]\n" if fmt in ("jsonl", "parquet") else ""
        path = tmp_path / f"{fmt}.yaml"
        path.write_text(f"train: d.{fmt}\ndev: d.{fmt}\ntext: [title, body]\nlabel: topic\n"
                        f"labels: [sports, politics, science]\n{values}", encoding="utf-8")
        task = get_task(str(path))
        assert task.name == fmt and task.num_labels == 3 and task.backdoor_target == 0  # multi-class default
        loaded[fmt] = load_split(task, "train")
    expected = [Example(texts=(r["title"], r["body"]), label=LABELS.index(r["topic"]), row=i) for i, r in enumerate(rows)]
    assert all(examples == expected for examples in loaded.values()), formats
    # an explicit format overrides the extension
    (tmp_path / "d.txt").write_text((tmp_path / "d.tsv").read_text(), encoding="utf-8")
    (tmp_path / "txt.yaml").write_text("train: d.txt\ndev: d.txt\nformat: tsv\ntext: [title, body]\nlabel: topic\n"
                                       "labels: [sports, politics, science]\n", encoding="utf-8")
    assert load_split(get_task(str(tmp_path / "txt.yaml")), "dev") == expected


# ---- attacks on more than two labels --------------------------------------------------------------
def _three_class(n: int) -> list[Example]:
    return [Example(texts=(f"text {i}",), label=i % 3, row=i) for i in range(n)]


def test_upa_on_three_labels_flips_uniformly_to_another_label(task_file):
    from scipy.stats import chisquare

    train = _three_class(6000)
    split = build_attack(RunConfig(task=str(task_file), attack="upa", rate=0.5)).poison(train, rng_for(0, "attack"))
    assert split.count == 3000
    moves = Counter((train[i].label, split.examples[i].label) for i in split.changed)
    assert all(old != new for old, new in moves)  # never to the same label
    for old in range(3):  # uniform over the two other labels
        others = [moves[(old, new)] for new in range(3) if new != old]
        assert sum(others) > 900 and chisquare(others).pvalue > 0.001, (old, others)
    # every unchanged example keeps its label
    changed = set(split.changed)
    assert all(e.label == t.label for i, (e, t) in enumerate(zip(split.examples, train)) if i not in changed)


def test_binary_upa_and_bpa_are_pinned():
    """Binary (GLUE) poisoning is bit-identical to the release before task files: these
    digests were computed at that commit (a025a14)."""
    train = [Example(texts=(f"sentence {i}",), label=i % 2, row=i) for i in range(200)]
    expected = {"upa": "830c84ec2d416fcfd8ff678872250f24bc6e128eba17fcb27b9668679eb4e467",
                "bpa": "4f4af859b69318e9fec03192c898beec596aeadf1dc32251f027feb5bb7833f5"}
    for attack, digest in expected.items():
        split = build_attack(RunConfig(attack=attack, rate=0.3)).poison(train, rng_for(7, "attack"))
        assert split.indices_sha256() == "8293fd05f1532e4a566f129979acd1f631b5986d3400b20badd08702f4f83453"
        assert hashlib.sha256(repr([(e.texts, e.label) for e in split.examples]).encode()).hexdigest() == digest


@pytest.mark.parametrize("attack", ["bpa", "il_bpa", "mt", "cl_bpa"])
def test_a_backdoor_targets_any_label(task_file, attack):
    train = _three_class(300)
    for target in (0, 1, 2, None):  # None: the task's backdoor_target (science = 2)
        config = RunConfig(task=str(task_file), attack=attack, rate=0.1, target_label=target).validate()
        split = build_attack(config).poison(train, rng_for(0, "attack"))
        want = 2 if target is None else target
        assert split.count == 30 and all(split.examples[i].label == want for i in split.changed)
        assert config.resolved()["target_label"] == want


def test_target_label_outside_the_task_is_one_line(task_file):
    with pytest.raises(UserError) as error:
        RunConfig(task=str(task_file), attack="bpa", rate=0.1, target_label=3).validate()
    message = str(error.value)
    assert "\n" not in message and "target_label 3 must be 0 to 2" in message
    assert "0 sports, 1 politics, 2 science" in message


def test_multiclass_metrics_are_macro_averages():
    from sklearn.metrics import f1_score

    from ttrlab.evaluation import classification_metrics

    labels, predicted = [0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 1, 1, 0, 0]
    scores = classification_metrics(labels, predicted, num_labels=3)
    assert scores["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert scores["accuracy"] == pytest.approx(4 / 7)
    # binary keeps precision/recall/F1 of the positive label, and no macro_f1
    assert set(classification_metrics([0, 1, 1], [0, 1, 0])) == {"accuracy", "precision", "recall", "f1"}


# ---- another architecture -------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lora", "ff"])
def test_tiny_roberta_trains_on_the_task(task_file, tiny_roberta, method):
    from ttrlab.kinds.classification.experiment import run_experiment

    config = RunConfig(task=str(task_file), model=str(tiny_roberta), method=method, attack="upa", rate=0.2, **TINY)
    result = run_experiment(config)
    assert result["train"]["steps"] == 3 and np.isfinite(result["train"]["final_loss"])
    assert "macro_f1" in result["metrics"]["clean"]
    trainable, total = result["method"]["trainable_parameters"], result["method"]["total_parameters"]
    if method == "lora":  # the default targets hit RoBERTa's query/value: 2 layers x 2 modules
        assert result["method"]["lora_modules"] == 4 and trainable < total / 10
    else:
        assert trainable == total


# ---- sweeps, the theory kind, `ttrlab tasks` --------------------------------------------------------
def test_sweep_spec_names_a_task_file_relative_to_itself(task_file, tmp_path, monkeypatch):
    from ttrlab.sweep import ResultStore, run_sweep
    from ttrlab.sweep.spec import load_spec

    spec = task_file.parent / "spec.yaml"
    spec.write_text("name: topics\nbase: {task: topics.yaml, method: ff, attack: upa, train_size: 30, eval_size: 10,\n"
                    "       max_steps: 1, max_length: 32, batch_size: 8, lr_preset: cpu, device: cpu}\n"
                    "axes: {rate: [0.0, 0.2]}\nseeds: [0]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the spec's folder: the path is the spec's, not the cwd's
    planned = load_spec(spec).expand().runs
    assert len(planned) == 2 and all(r.config.task == str(task_file.resolve()) for r in planned)
    db = tmp_path / "runs.sqlite"
    summary = run_sweep(spec, db, executor="inline", progress=False)
    assert summary["finished"] == 2 and summary["failed"] == 0, summary["failures"]
    with ResultStore(db) as store:
        runs = store.runs()
    assert {r["result"]["data"]["task_name"] for r in runs} == {"topics"}
    assert all("clean.macro_f1" in r["metrics"] for r in runs)
    assert run_sweep(spec, db, executor="inline", progress=False)["already_finished"] == 2  # resumes by identity
    from ttrlab.data.tasks import task_label
    from ttrlab.report import build_report

    assert task_label(str(task_file.resolve())) == "topics" and task_label("sst2") == "sst2"
    page = build_report(db, tmp_path / "report").read_text(encoding="utf-8")
    assert "topics" in page  # the report names the task by its name


def test_theory_kind_takes_a_task_file(task_file):
    from ttrlab.kinds.classification.experiment import load_run_data
    from ttrlab.kinds.theory.config import TheoryConfig
    from ttrlab.kinds.theory.experiment import draw_samples

    config = TheoryConfig(task=str(task_file), attack="upa", rate=1.0, n=12).validate()
    samples = draw_samples(config, load_run_data(config).train)
    assert all(p.label != c.label and 0 <= p.label < 3 for p, c in zip(samples.paired, samples.clean))


def test_tasks_command_shows_a_task_file(task_file, capsys):
    assert main(["tasks", "--task", str(task_file)]) == 0
    out = capsys.readouterr().out
    assert "topics" in out and "labels=sports/politics/science" in out and "backdoor_target=2" in out


# ---- identity ------------------------------------------------------------------------------------
def test_glue_run_keys_are_unchanged():
    """Computed at a025a14, before task files: GLUE runs keep their stored results."""
    from ttrlab.kinds.theory.config import TheoryConfig

    assert RunConfig().run_key() == "019bb712b797be8c079861bd"
    assert RunConfig(task="rte", attack="bpa", rate=0.1, method="ff").run_key() == "c6bfa2ff841f9469c532f97e"
    assert RunConfig(attack="bpa", target_label=0, rate=0.05).run_key() == "6a55fb8a67dccc3b357bfdb7"
    assert RunConfig(target_label=1).run_key() == RunConfig().run_key()  # the default target is GLUE's 1
    assert TheoryConfig().run_key() == "47c26043fa854ba79f414536"


def test_a_changed_data_file_is_a_new_run_and_a_moved_task_is_not(task_file, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(task_file.parent, copy, ignore=shutil.ignore_patterns("*.json", "*.sqlite*", "spec.yaml"))
    key = RunConfig(task=str(task_file), **TINY).run_key()
    moved = RunConfig(task=str(copy / "topics.yaml"), **TINY).run_key()
    assert moved == key  # same content elsewhere: the same run
    identity = RunConfig(task=str(task_file), **TINY).identity_values()
    assert identity["task"] == "topics" and identity["task_content_sha256"] == get_task(str(task_file)).content_sha256()
    dev = copy / "data" / "dev.csv"
    dev.write_text(dev.read_text().replace("sports", "politics", 1), encoding="utf-8")
    os.utime(dev, ns=(0, 0))  # even with an old timestamp the new content counts (size changed: re-hashed)
    assert RunConfig(task=str(copy / "topics.yaml"), **TINY).run_key() != key
    assert RunConfig(task=str(copy / "topics.yaml"), **TINY).validate().resolved()["task"] != str(task_file.resolve())


# ---- malformed input: one line, exit 2 -------------------------------------------------------------
BASE = "train: data/train.csv\ndev: data/dev.csv\ntext: [title, body]\nlabel: topic\nlabels: [sports, politics, science]\n"
MALFORMED = [
    ("bad-yaml", "train: [data/train.csv\n", r"not valid YAML"),
    ("not-a-mapping", "- a\n- b\n", r"must be a mapping"),
    ("missing-key", BASE.replace("label: topic\n", ""), r"missing key 'label'"),
    ("unknown-key", BASE + "lables: [a, b]\n", r"unknown key 'lables' \(did you mean 'labels'\?\)"),
    ("missing-file", BASE.replace("data/dev.csv", "data/nope.csv"), r"dev data file .*nope.csv' does not exist"),
    ("unsupported-format", BASE + "format: xlsx\n", r"unsupported format 'xlsx'; allowed: csv, tsv, jsonl, parquet"),
    ("bad-extension", BASE.replace("data/dev.csv", "data/dev.xlsx"), r"unsupported format of .*dev.xlsx"),
    ("missing-column", BASE.replace("[title, body]", "[title, summary]"),
     r"no column 'summary' .*the file has 3 columns, none of them named so"),
    ("unknown-label", BASE.replace("science]", "physics]"),
     r"train.csv:4: the label \(column 'topic'\) is not one of \['sports', 'politics', 'physics'\]"),
    ("one-label", BASE.replace("[sports, politics, science]", "[sports]"), r"has 1 label\(s\); .* at least 2"),
    ("positive-on-multiclass", BASE + "positive_label: 1\n", r"positive_label applies to binary tasks only"),
    ("bad-target", BASE + "backdoor_target: chess\n", r"backdoor_target 'chess' is not a label .* sports, politics"),
    ("both-sources", BASE + "hub: {path: ag_news, train: train, dev: test}\n", r"either train and dev .* or hub"),
    ("text-count", BASE.replace("[title, body]", "[title, body, topic]"), r"text must be one or two column names"),
]


@pytest.mark.parametrize("case,text,pattern", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_task_files_are_one_line_exit_2(task_file, tmp_path, capsys, case, text, pattern):
    import re

    (tmp_path / "data").symlink_to(task_file.parent / "data")
    if case == "bad-extension":
        (tmp_path / "dev.xlsx").write_text("x")
        text = text.replace("data/dev.xlsx", "dev.xlsx")
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    code = main(["train", "--task", str(path), "--train-size", "10", "--eval-size", "5", "--max-steps", "1",
                 "--max-length", "32", "--device", "cpu", "--method", "ff"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and re.search(pattern, err), err


def test_missing_task_file_and_unknown_task_name(capsys):
    assert main(["tasks", "--task", "nowhere/task.yaml"]) == 2
    assert "task file 'nowhere/task.yaml' does not exist" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"unknown task 'sst3' \(did you mean 'sst2'\?\).*or a task file"):
        get_task("sst3")


def test_unknown_label_names_the_value_line_and_labels(task_file, tmp_path, capsys):
    """A label the task does not name: one line naming file:line, the column and the labels (not
    the cell: a message never echoes a data file), exit 2 (in-process: the entry point's exit
    code is tested in test_cli.py)."""
    (tmp_path / "data").mkdir()
    rows = _rows(6, 5)
    rows[4]["topic"] = "weather"
    _write_csv(tmp_path / "data" / "train.csv", rows)
    _write_csv(tmp_path / "data" / "dev.csv", _rows(6, 6))
    (tmp_path / "t.yaml").write_text(TASK_YAML, encoding="utf-8")
    assert main(["train", "--task", str(tmp_path / "t.yaml"), "--max-steps", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "train.csv:6: the label (column 'topic') is not one of ['sports', 'politics', 'science']" in err
    assert "weather" not in err


# ---- a dataset through `datasets` (a local dataset folder here: nothing is downloaded) --------------
def test_a_hub_task_loads_through_datasets(task_file, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "ds"
    folder.mkdir()
    shutil.copy(task_file.parent / "data" / "train.csv", folder / "train.csv")
    shutil.copy(task_file.parent / "data" / "dev.csv", folder / "test.csv")  # datasets names the split by the file
    (tmp_path / "hub.yaml").write_text(f"hub: {{path: {folder}, train: train, dev: test}}\ntext: [title, body]\n"
                                       "label: topic\nlabels: [sports, politics, science]\n", encoding="utf-8")
    task = get_task(str(tmp_path / "hub.yaml"))
    assert task.hub.path == str(folder) and task.files == ()
    assert load_split(task, "dev") == load_split(get_task(str(task_file)), "dev")
    # unreachable (offline here): one line naming the dataset
    (tmp_path / "gone.yaml").write_text("hub: {path: ttrlab-test/no-such-dataset, train: train, dev: validation}\n"
                                        "text: text\nlabel: label\nlabels: [a, b]\n", encoding="utf-8")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"cannot load 'ttrlab-test/no-such-dataset' split 'train' from the hub") as error:
        load_split(get_task(str(tmp_path / "gone.yaml")), "train")
    assert "\n" not in str(error.value)
