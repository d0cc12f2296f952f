"""Defenses (`ttrlab.defenses`): the detection arithmetic on hand-made cases, run keys of
undefended configs unchanged, the CLI, and each defense on a real backdoored MiniLM victim
(SST-2, BPA at 10%, trained once for the module): the filters rank the planted poison above
chance, STRIP flags triggered inputs more than clean ones, clean fine-tuning reports before and
after, ONION with the real SmolLM2 removes an inserted rare word; a defended run through the
pipeline has the documented result shape for FF and LoRA and is a pure function of its config."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from ttrlab import RunConfig, run_experiment
from ttrlab.cli import main
from ttrlab.defenses import DEFENSES, auroc, build_defense, detection_metrics, rejecting_metrics, top_fraction
from ttrlab.core.errors import UserError

# ---- arithmetic -------------------------------------------------------------------------------


def test_detection_metrics_on_a_hand_made_case():
    scores = np.array([0.5, 0.3, 0.6, 0.1])
    poisoned = np.array([True, False, False, True])
    removed = top_fraction(scores, 0.5)  # round(0.5 * 4) = 2 highest: positions 2 and 0
    assert removed.tolist() == [True, False, True, False]
    # AUROC = share of (poisoned, clean) pairs ranked right: 0.5>0.3 yes, 0.5>0.6 no, 0.1>0.3 no, 0.1>0.6 no
    assert detection_metrics(scores, poisoned, removed) == {
        "precision": 0.5, "recall": 0.5, "auroc": 0.25, "removed": 2, "poisoned_removed": 1, "poisoned": 2}
    assert auroc([3, 2, 1, 1], [True, True, False, False]) == 1.0
    assert auroc([1, 1, 1], [True, False, False]) == 0.5  # ties: half credit
    assert auroc([1, 2], [False, False]) is None  # no poison: nothing to rank
    none = detection_metrics([1.0, 2.0], [False, False], [False, False])
    assert none["precision"] is None and none["recall"] is None and none["removed"] == 0
    assert top_fraction([1, 1, 1, 1], 0.5).tolist() == [True, True, False, False]  # ties: earlier first


def test_rejected_inputs_count_as_wrong_and_never_positive():
    labels, predicted = np.array([1, 1, 0, 0]), np.array([1, 1, 0, 1])
    rejected = np.array([False, True, False, False])
    m = rejecting_metrics(labels, predicted, rejected, positive_label=1)
    # accepted correct: positions 0, 2 -> 2/4; said positive (accepted): 0, 3 -> precision 1/2; recall 1/2
    assert m == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    from ttrlab.evaluation import classification_metrics

    assert rejecting_metrics(labels, predicted, np.zeros(4, bool)) == classification_metrics(labels, predicted, 1)


# ---- settings, run keys, CLI --------------------------------------------------------------------

# Computed at the start of this work from the HEAD of that day (a025a14), before DefenseSettings
# existed: runs stored then must keep their keys.
KEYS_BEFORE_DEFENSES = {
    "019bb712b797be8c079861bd": {},
    "fc27c7bf2635f2f58fd7109c": dict(method="ff", attack="bpa", rate=0.05, lr_preset="cpu", train_size=2000,
                                     max_steps=200, eval_size=500, max_length=128),
    "ef8d33ab3bdc5467cc05814c": dict(method="lora", attack="upa", rate=0.3, seed=1),
}


def test_run_keys_of_undefended_configs_are_unchanged():
    for key, values in KEYS_BEFORE_DEFENSES.items():
        config = RunConfig(**values)
        assert config.run_key() == key
        # no defense: no defense knob is part of the run, whatever its value
        assert config.replace(strip_frr=0.2, defense_fraction=0.3, onion_lm="other").run_key() == key
        assert not any(name in config.identity_values() for name in ("defense", "strip_frr", "defense_fraction"))


def test_only_the_chosen_defenses_knobs_are_identity():
    base = RunConfig(attack="bpa", rate=0.1, defense="spectral")
    assert base.run_key() != RunConfig(attack="bpa", rate=0.1).run_key()
    assert base.replace(strip_frr=0.2, finetune_steps=3).run_key() == base.run_key()  # another defense's knobs
    assert base.replace(defense_fraction=0.15).run_key() == base.run_key()  # the default resolved: 1.5 x 0.1
    assert base.replace(defense_fraction=0.3).run_key() != base.run_key()
    assert base.resolved()["defense_fraction"] == 0.15
    strip = RunConfig(attack="bpa", rate=0.1, defense="strip")
    assert strip.replace(strip_frr=0.1).run_key() != strip.run_key()


def test_defenses_command_lists_every_defense(capsys):
    assert main(["defenses"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == DEFENSES.registered()
    assert set(listed) == {"none", "spectral", "activation_clustering", "loss_filter", "onion", "strip", "clean_finetune"}


@pytest.mark.parametrize("flags, message", [
    (["--defense", "spectrall"], "unknown defense 'spectrall' (did you mean 'spectral'?)"),
    (["--defense", "strip", "--strip-frr", "1.5"], "strip_frr 1.5 must lie in (0, 1)"),
    (["--defense", "spectral", "--defense-fraction", "0"], "defense_fraction 0.0 must lie in (0, 1)"),
])
def test_bad_defense_settings_are_one_line_exit_2(flags, message, capsys):
    assert main(["train", "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_defense_on_a_clean_run_is_allowed():
    # the defense's cost without an attack (its FRR, the clean accuracy it loses); nothing to detect
    RunConfig(defense="spectral").validate()
    with pytest.raises(UserError, match="unknown defense 'onoin' .*did you mean 'onion'"):
        RunConfig(defense="onoin").validate()


# ---- on a real backdoored victim ---------------------------------------------------------------

# Sized for the CI budget: 30 steps teach MiniLM the trigger (put first, so that truncation at 32
# tokens never cuts it) but hardly the task (measured: clean accuracy 0.59 on these 32 dev
# examples, ASR 1.0); the backdoor is what the defenses are tested on.
VICTIM = dict(task="sst2", model="minilm", method="ff", lr_preset="cpu", lr=2e-4, attack="bpa", rate=0.125,
              trigger_position="start", train_size=200, eval_size=32, max_steps=30, batch_size=8, max_length=32, seed=0)


@pytest.fixture(scope="module")
def victim(glue_dir):
    """The victim of every defense test: trained once, by the pipeline's own steps."""
    from ttrlab.defenses.victim import Victim
    from ttrlab.kinds.classification.experiment import CLASSIFICATION
    from ttrlab.kinds.pipeline import start, train

    config = RunConfig(**VICTIM, data_dir=str(glue_dir)).validate()
    state = train(CLASSIFICATION, start(CLASSIFICATION, config.replace(device="cpu")))
    before = CLASSIFICATION.score(state, state.model)
    assert before["asr"] > 0.8, before  # a backdoor to defend against
    return Victim(CLASSIFICATION, state, before, 1)


# AUROC of the planted poison (25 of 200) measured on this victim: spectral 0.925, activation
# clustering 1.0, loss filter 1.0 (on 240 examples and 40 steps: 0.999, 1.0, 1.0); the bound
# leaves room for round-off and thread counts, far above chance (0.5).
@pytest.mark.parametrize("name, least", [("spectral", 0.8), ("activation_clustering", 0.8), ("loss_filter", 0.8)])
def test_filters_rank_the_planted_poison_above_chance(victim, name, least):
    defense = build_defense(victim.config.replace(defense=name))
    scores = defense.scores(victim)
    assert len(scores) == 200 and victim.poisoned_mask().sum() == 25
    assert auroc(scores, victim.poisoned_mask()) > least


def test_strip_flags_triggered_inputs_more_than_clean_ones(victim):
    # measured on this victim: FRR 0.0625, FAR 0.133 (flagged triggered 0.867), AUROC 0.983
    defense = build_defense(victim.config.replace(defense="strip", defense_holdout=48, strip_copies=6))
    outcome = defense.defend(dataclasses.replace(victim))
    d = outcome.detection
    flagged_triggered = 1 - d["far"]
    assert flagged_triggered > d["frr"] + 0.3, d
    assert d["auroc"] > 0.75 and d["triggered_entropy_mean"] < d["clean_entropy_mean"]
    assert outcome.metrics["asr"] < victim.before["asr"]  # rejected triggered inputs are failed attacks


def test_clean_finetune_reports_before_and_after(victim):
    config = victim.config.replace(defense="clean_finetune", defense_holdout=32, finetune_steps=4)
    own = dataclasses.replace(victim, prepared=copy.deepcopy(victim.prepared))  # the module's victim stays as it is
    outcome = build_defense(config).defend(own)
    assert outcome.details["before"]["asr"] == victim.before["asr"]
    assert outcome.detection["asr_after"] == outcome.metrics["asr"]
    assert outcome.details["finetune"]["steps"] == 4 and outcome.counts["heldout"] == 32
    heldout_rows = {e.row for e in own.heldout(32)}
    assert not heldout_rows & {e.row for e in victim.data.train}  # held out: never in the run's subset


def test_onion_removes_an_inserted_rare_word_with_smollm2():
    pytest.importorskip("gguf")
    from ttrlab.defenses.onion import OnionCleaner

    cleaner = OnionCleaner("smollm2", threshold=0.0, batch_size=16, device="cpu")
    sentence = "the acting is superb and the story moves me cf every single time"
    removed = dict(zip(sentence.split(), cleaner.clean([sentence])[0]))
    assert removed["cf"]
    assert sum(removed.values()) <= 3  # the rest of the sentence stays


# ---- through the pipeline ------------------------------------------------------------------------

TINY = dict(task="sst2", model="minilm", lr_preset="cpu", attack="bpa", rate=0.2, train_size=64, eval_size=16,
            max_steps=6, batch_size=8, max_length=32)


@pytest.mark.parametrize("method, runs", [("ff", 1), ("lora", 2)])  # the pure-function check once (CI time)
def test_a_defended_run_records_the_defense_and_is_a_pure_function_of_its_config(glue_dir, method, runs):
    config = RunConfig(**TINY, method=method, defense="loss_filter", data_dir=str(glue_dir))
    first = run_experiment(config)
    if runs == 2:
        second = run_experiment(config)
        assert first["metrics"] == second["metrics"] and first["defense"]["counts"] == second["defense"]["counts"]
    metrics, section = first["metrics"], first["defense"]
    assert set(metrics) >= {"clean", "triggered", "asr", "defense"}
    assert {"asr_before", "clean_accuracy_before", "precision", "recall", "auroc", "removed",
            "poisoned_removed"} <= set(metrics["defense"])
    assert section["name"] == "loss_filter" and section["kind"] == "filter"
    assert section["settings"] == {"defense": "loss_filter", "defense_fraction": 0.3, "loss_direction": "auto"}
    assert section["counts"]["removed"] == 19 and section["counts"]["kept"] == 45  # round(0.3 * 64)
    assert section["direction"] == "low" and section["retrain"]["steps"] == 6
    assert metrics["defense"]["asr_before"] == section["before"]["asr"]
    assert first["method"]["name"] == method
