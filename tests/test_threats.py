"""Threat models (`ttrlab.threats`): the default adds nothing to a run's identity; every refused
combination is one line naming the value and what is allowed; `poisoned_base` builds its stage 1
once and every stage 2 starts from exactly those weights; stage 2 never trains on a poisoned
example (its batches decoded)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ttrlab.attacks import ATTACKS
from ttrlab.core.errors import UserError
from ttrlab.defenses import DEFENSES
from ttrlab.kinds.classification.config import RunConfig
from ttrlab.methods import METHODS
from ttrlab.threats import DEFAULT_THREAT, THREATS

# the keys pinned by tests/test_defenses.py (computed before defenses existed): runs stored before
# threats existed keep them
KEYS_BEFORE_THREATS = {
    "019bb712b797be8c079861bd": {},
    "fc27c7bf2635f2f58fd7109c": dict(method="ff", attack="bpa", rate=0.05, lr_preset="cpu", train_size=2000,
                                     max_steps=200, eval_size=500, max_length=128),
    "ef8d33ab3bdc5467cc05814c": dict(method="lora", attack="upa", rate=0.3, seed=1),
}


def test_the_default_threat_keeps_every_run_key():
    for key, values in KEYS_BEFORE_THREATS.items():
        config = RunConfig(**values)
        assert config.run_key() == key
        assert config.replace(threat=DEFAULT_THREAT, base_size=7, base_steps=3, base_lr=1.0).run_key() == key
        assert not any(name in config.identity_values() for name in ("threat", "base_size", "base_steps", "base_lr"))


def test_a_poisoned_base_run_is_keyed_by_its_stage_one():
    config = RunConfig(threat="poisoned_base", attack="bpa", rate=0.05, lr_preset="cpu").validate()
    plain = RunConfig(attack="bpa", rate=0.05, lr_preset="cpu")
    assert config.run_key() != plain.run_key()
    assert config.identity_values()["base_lr"] == 5e-5  # the cpu preset's FF rate, resolved and stored
    for change in (dict(base_steps=100), dict(base_size=1000), dict(base_lr=1e-4)):
        assert config.replace(**change).run_key() != config.run_key()
    assert config.replace(base_lr=5e-5).run_key() == config.run_key()  # the default, written out


def _outcome(**values):
    try:
        RunConfig(**values).validate()
        return None
    except UserError as error:
        return str(error)


@pytest.mark.parametrize("threat", THREATS.registered())
def test_every_threat_method_attack_defense_combination_is_run_or_refused_in_one_line(threat):
    for method in METHODS.registered():
        if "classification" not in METHODS.get(method).task_types:
            continue
        for attack in ATTACKS:
            if "classification" not in ATTACKS.get(attack).task_types:
                continue
            for defense in DEFENSES.registered():
                message = _outcome(threat=threat, method=method, attack=attack, rate=0.05, defense=defense)
                if message is None:
                    continue
                assert "\n" not in message and threat in message and "allowed:" in message, message
    # what is refused, and why: a trigger-less attack, a defense (stage 2 is clean)
    assert _outcome(threat="poisoned_base", method="lora", attack="bpa", rate=0.05) is None
    assert _outcome(threat="poisoned_base", method="ff", attack="bpa", rate=0.0) is None  # the control
    assert "no trigger" in _outcome(threat="poisoned_base", attack="upa", rate=0.1)
    assert "no trigger" in _outcome(threat="poisoned_base", attack="none")
    assert "stage 2 trains on clean data" in _outcome(threat="poisoned_base", attack="bpa", defense="spectral")
    assert "did you mean 'poisoned_base'" in _outcome(threat="poisond_base")
    assert _outcome(threat="poisoned_base", attack="bpa", base_steps=0) == "base_steps 0 must be >= 1"


def test_a_refused_threat_on_the_command_line_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "ttrlab", "train", "--threat", "poisoned_base", "--attack", "upa",
                           "--rate", "0.1"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "attack 'upa' under threat poisoned_base" in proc.stderr, proc.stderr


def test_threats_command_lists_what_each_measures():
    proc = subprocess.run([sys.executable, "-m", "ttrlab", "threats"], capture_output=True, text=True)
    assert proc.returncode == 0
    for name in THREATS.registered():
        assert f"{name}" in proc.stdout
    assert proc.stdout.count("measures:") == len(THREATS.registered())


# ---- poisoned_base through the pipeline (tiny: what is tested is the plumbing, not the implant) ---

TINY = dict(task="sst2", model="minilm", lr_preset="cpu", attack="bpa", rate=0.125, trigger_position="start",
            threat="poisoned_base", base_size=48, base_steps=3, train_size=32, eval_size=16, max_steps=3,
            batch_size=8, max_length=32, seed=0)


@pytest.fixture
def counted_builds(monkeypatch, tmp_path):
    """Stage-1 builds in a fresh store under tmp_path, counted."""
    from ttrlab.threats import base_model

    monkeypatch.setenv(base_model.CACHE_ENV, str(tmp_path / "store"))
    built = []
    real = base_model.build

    def counting(stage, folder):
        built.append(stage.run_key())
        return real(stage, folder)

    monkeypatch.setattr(base_model, "build", counting)
    return built


def _state(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_stage_one_is_built_once_and_every_stage_two_starts_from_its_weights(glue_dir, counted_builds, monkeypatch,
                                                                              tmp_path):
    import torch
    from safetensors.torch import load_file

    from ttrlab.kinds.classification.experiment import run_experiment
    from ttrlab.models.runtime import Runtime
    from ttrlab.threats import base_model
    from ttrlab.threats.two_stage import POISONED_BASE

    config = RunConfig(**TINY, method="ff", data_dir=str(glue_dir)).validate()
    # stage 2 of 0 steps is the base itself: its metrics are stage 1's
    start = run_experiment(config.replace(max_steps=0))
    assert start["metrics"]["asr"] == start["metrics"]["threat"]["base_asr"]
    assert start["metrics"]["clean"]["accuracy"] == start["metrics"]["threat"]["base_clean_accuracy"]
    stored = base_model.stored_base(config, Runtime.resolve("cpu", "fp32"))
    weights = load_file(stored.weights)
    lora = run_experiment(config.replace(method="lora"))
    assert len(counted_builds) == 1  # the FF and the LoRA run share one stage 1
    assert lora["threat"]["stage1"]["key"] == start["threat"]["stage1"]["key"] == stored.record["key"]
    assert all(torch.equal(weights[name], tensor) for name, tensor in load_file(stored.weights).items())

    # loaded into a fresh classifier, the weights are the stored ones, head included
    from ttrlab.kinds.pipeline import start

    _, model = POISONED_BASE.load_model(start(POISONED_BASE, config))
    state = _state(model)
    assert set(weights) <= set(state) and all(torch.equal(state[name], weights[name]) for name in weights)
    head = [n for n in weights if n.startswith("classifier")]
    assert head, sorted(weights)[:5]

    # the stage is a pure function of the config: built again elsewhere, the same weights
    monkeypatch.setenv(base_model.CACHE_ENV, str(tmp_path / "other"))
    again = load_file(base_model.stored_base(config, Runtime.resolve("cpu", "fp32")).weights)
    assert len(counted_builds) == 2 and set(again) == set(weights)
    assert all(torch.equal(again[name], weights[name]) for name in weights)


def test_stage_two_never_trains_on_a_poisoned_example(glue_dir, counted_builds):
    from ttrlab.data import load_split
    from ttrlab.kinds.classification.experiment import CLASSIFICATION, run_experiment
    from ttrlab.models.loading import load_classifier
    from ttrlab.threats.base_model import stage_one_config
    from ttrlab.threats.two_stage import POISONED_BASE

    config = RunConfig(**TINY, method="lora", data_dir=str(glue_dir)).validate()
    tokenizer, _ = load_classifier("minilm", 2, 0)
    data = POISONED_BASE.load_data(config)
    task = data.task
    clean = {e.row: e for e in load_split(task, "train", config.data_dir)}
    stage = stage_one_config(config)
    attacked = CLASSIFICATION.poison(stage, CLASSIFICATION.load_data(stage)).split
    poisoned_rows = {attacked.examples[i].row for i in attacked.changed}
    assert poisoned_rows  # stage 1 was poisoned: there is something stage 2 must never see
    trigger = tokenizer.decode(tokenizer(config.trigger, add_special_tokens=False)["input_ids"])
    assert any(trigger in tokenizer.decode(tokenizer(attacked.examples[i].texts[0])["input_ids"])
               for i in attacked.changed)  # the check below can see a trigger where there is one

    seen = []

    def hook(positions, batch):
        for row, position in enumerate(positions):
            ids = batch["input_ids"][row][batch["attention_mask"][row].bool()]
            seen.append((data.train[position].row, tokenizer.decode(ids, skip_special_tokens=True),
                         int(batch["labels"][row])))

    result = run_experiment(config, batch_hook=hook)
    assert len(seen) == config.max_steps * config.batch_size
    for row, text, label in seen:
        assert row not in data.base_rows  # never a row of the attacker's data
        assert trigger not in text
        assert label == clean[row].label  # the true label
        expected = tokenizer.decode(tokenizer(clean[row].texts[0], truncation=True, max_length=config.max_length)
                                    ["input_ids"], skip_special_tokens=True)
        assert text == expected  # the clean sentence as the split has it
    assert result["poison"]["stage2_count"] == 0 and result["poison"]["count"] == len(poisoned_rows) == 6
