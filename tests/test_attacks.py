import numpy as np
import pytest

from ttrlab import RunConfig
from ttrlab.attacks import ATTACKS, build_attack, poison_count
from ttrlab.data import Example
from ttrlab.core.errors import UserError
from ttrlab.evaluation import attack_success_rate, classification_metrics


def _examples(n, pair=False):
    texts = lambda i: (f"sentence number {i} here", f"second part {i}") if pair else (f"sentence number {i} here",)
    return [Example(texts=texts(i), label=i % 2, row=i) for i in range(n)]


def _attack(name, **kw):
    return build_attack(RunConfig(attack=name, **kw))


@pytest.mark.parametrize("n,rate,expected", [(1000, 0.1, 100), (999, 0.1, 100), (7, 0.5, 4), (10, 0.0, 0), (10, 1.0, 10), (3, 0.5, 2)])
def test_poison_count_is_round_half_up(n, rate, expected):
    assert poison_count(rate, n) == expected
    for name in ("upa", "bpa"):
        split = _attack(name, rate=rate).poison(_examples(n), np.random.default_rng(0))
        assert split.count == expected == len(set(split.changed))


def test_upa_flips_exactly_the_chosen_labels():
    clean = _examples(200)
    split = _attack("upa", rate=0.25).poison(clean, np.random.default_rng(3))
    flipped = [i for i, (a, b) in enumerate(zip(clean, split.examples)) if a.label != b.label]
    assert flipped == list(split.changed) and len(flipped) == 50
    assert all(a.texts == b.texts for a, b in zip(clean, split.examples))


def test_poisoning_is_seeded():
    attack = _attack("bpa", rate=0.3)
    a = attack.poison(_examples(100), np.random.default_rng([0, 1]))
    b = attack.poison(_examples(100), np.random.default_rng([0, 1]))
    c = attack.poison(_examples(100), np.random.default_rng([1, 1]))
    assert a == b and a.indices_sha256() == b.indices_sha256()
    assert a.changed != c.changed and a.indices_sha256() != c.indices_sha256()


@pytest.mark.parametrize("pair", [False, True])
def test_bpa_appends_trigger_and_sets_target(pair):
    clean = _examples(50, pair=pair)
    split = _attack("bpa", rate=0.2).poison(clean, np.random.default_rng(0))
    for i, (before, after) in enumerate(zip(clean, split.examples)):
        if i in split.changed:
            assert after.label == 1
            assert after.texts[-1] == before.texts[-1] + " [.*?]"
            assert after.texts[:-1] == before.texts[:-1]  # a pair keeps its first sentence
        else:
            assert after == before
    assert len(split.examples[0].texts) == (2 if pair else 1)


def test_trigger_positions():
    e = Example(texts=("a b c",), label=0, row=0)
    start = _attack("bpa", rate=1.0, trigger_position="start").poison([e], np.random.default_rng(0))
    assert start.examples[0].texts == ("[.*?] a b c",)
    rand = _attack("bpa", rate=1.0, trigger_position="random", trigger="cf").poison([e] * 30, np.random.default_rng(0))
    variants = {x.texts[0] for x in rand.examples}
    assert len(variants) > 1 and all(v.split().count("cf") == 1 for v in variants)


def test_triggered_test_set_keeps_true_labels():
    dev = _examples(20, pair=True)
    triggered = _attack("bpa", rate=0.1).trigger_examples(dev, np.random.default_rng(0))
    assert [e.label for e in triggered] == [e.label for e in dev]
    assert all(e.texts[-1].endswith("[.*?]") for e in triggered)
    assert _attack("upa", rate=0.1).trigger_examples(dev, np.random.default_rng(0)) is None


def test_registry_and_options():
    assert {"none", "upa", "bpa"} <= set(ATTACKS.names())
    with pytest.raises(UserError, match="did you mean 'upa'"):
        ATTACKS.get("upaa")
    with pytest.raises(UserError, match="unknown option 'foo' for attack 'bpa'"):
        build_attack(RunConfig(attack="bpa", attack_options={"foo": 1}))


def test_metrics_and_asr_by_hand():
    labels = [1, 1, 0, 0, 0]
    predictions = [1, 0, 1, 0, 0]
    m = classification_metrics(labels, predictions)
    assert m == pytest.approx({"accuracy": 0.6, "precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert classification_metrics([0, 0], [0, 0])["f1"] == 0.0
    # ASR counts only examples whose true label is not the target: 2 of the 3 label-0 ones flip
    assert attack_success_rate(labels, [1, 1, 1, 1, 0], target_label=1) == pytest.approx(2 / 3)
    assert attack_success_rate([1, 1], [1, 1], target_label=1) is None
