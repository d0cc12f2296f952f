"""The Appendix E.1 backdoors (CL-BPA, IL-BPA, MT, S-BPA): exact counts, seeded choices, what
changes and what must not, and that the poisoned examples are what the trainer consumes."""
import re
import warnings
from collections import Counter

import numpy as np
import pytest

from conftest import SHARED_DATA
from ttrlab import RunConfig, run_experiment
from ttrlab.attacks import ATTACKS, build_attack, poison_count
from ttrlab.data import Example
from ttrlab.core.streams import rng_for
from ttrlab.core.errors import UserError

STYLE_DIR = SHARED_DATA / "style"
needs_style = pytest.mark.needs_data("style")
TINY = dict(task="sst2", model="minilm", train_size=64, eval_size=32, max_steps=8, batch_size=8, lr_preset="cpu")
INSTRUCTION = "Please carefully follow user's instruction."


def _examples(n, pair=False, labels=None):
    def texts(i):
        return (f"sentence number {i} is here", f"second part {i}") if pair else (f"sentence number {i} is here",)

    return [Example(texts=texts(i), label=(labels[i] if labels else i % 2), row=i) for i in range(n)]


def _attack(name, **kw):
    return build_attack(RunConfig(attack=name, **kw))


def _words(example):
    return Counter(" ".join(example.texts).split())


def _decoded_words(text):
    """Words of a decoded batch text (decoding glues punctuation: "orange ," -> "orange,")."""
    return set(re.findall(r"[a-z]+", text))


def test_all_four_are_registered_backdoors():
    for name in ("cl_bpa", "il_bpa", "mt", "s_bpa"):
        assert ATTACKS.get(name).is_backdoor()
    with pytest.raises(UserError, match="unknown option 'trigers'.*did you mean 'triggers'"):
        _attack("mt", attack_options={"trigers": ["a", "b"]})


@pytest.mark.parametrize("name", ["cl_bpa", "il_bpa", "mt"])
def test_choices_are_seeded(name):
    attack = _attack(name, rate=0.2)
    a = attack.poison(_examples(100), np.random.default_rng([0, 1]))
    b = attack.poison(_examples(100), np.random.default_rng([0, 1]))
    c = attack.poison(_examples(100), np.random.default_rng([1, 1]))
    assert a == b
    assert a.changed != c.changed or a.examples != c.examples
    assert attack.trigger_examples(_examples(20), np.random.default_rng(5)) == attack.trigger_examples(
        _examples(20), np.random.default_rng(5)
    )


# ---- CL-BPA ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,rate", [(200, 0.1), (101, 0.25), (40, 0.5), (10, 0.0)])
def test_cl_bpa_triggers_only_target_examples_and_never_changes_labels(n, rate):
    clean = _examples(n)
    split = _attack("cl_bpa", rate=rate).poison(clean, np.random.default_rng(0))
    assert split.count == poison_count(rate, n)  # rho is the share of the whole training set
    assert [e.label for e in split.examples] == [e.label for e in clean]
    for i, (before, after) in enumerate(zip(clean, split.examples)):
        if i in split.changed:
            assert before.label == 1 and after.texts[0] == before.texts[0] + " [.*?]"
        else:
            assert after == before


def test_cl_bpa_rejects_a_rate_above_the_target_share():
    labels = [1] * 30 + [0] * 70
    with pytest.raises(UserError, match=r"only 30 have the target label 1.*rate <= 0\.3000"):
        _attack("cl_bpa", rate=0.31).poison(_examples(100, labels=labels), np.random.default_rng(0))
    split = _attack("cl_bpa", rate=0.3).poison(_examples(100, labels=labels), np.random.default_rng(0))
    assert list(split.changed) == list(range(30))  # every target example
    split = _attack("cl_bpa", rate=0.1, target_label=0).poison(_examples(100, labels=labels), np.random.default_rng(0))
    assert all(labels[i] == 0 for i in split.changed) and split.count == 10


# ---- IL-BPA ------------------------------------------------------------------------------------
@pytest.mark.parametrize("pair", [False, True])
def test_il_bpa_prepends_the_instruction_and_sets_the_target(pair):
    clean = _examples(80, pair=pair)
    split = _attack("il_bpa", rate=0.25).poison(clean, np.random.default_rng(0))
    assert split.count == 20
    for i, (before, after) in enumerate(zip(clean, split.examples)):
        if i in split.changed:
            assert after.label == 1
            assert after.texts[0] == f"{INSTRUCTION} {before.texts[0]}"
            assert after.texts[1:] == before.texts[1:]
        else:
            assert after == before
    triggered = _attack("il_bpa", attack_options={"instruction": "Obey."}).trigger_examples(clean, np.random.default_rng(0))
    assert [e.label for e in triggered] == [e.label for e in clean]
    assert all(t.texts[0] == "Obey. " + c.texts[0] for t, c in zip(triggered, clean))
    with pytest.raises(UserError, match="instruction must be a non-empty sentence"):
        _attack("il_bpa", attack_options={"instruction": "  "})


# ---- MT ----------------------------------------------------------------------------------------
TRIGGERS = ("apple", "banana", "orange")


def _inserted(before, after):
    """The words `after` has more of than `before`, as a set (each must be inserted once)."""
    added = _words(after) - _words(before)
    assert all(count == 1 for count in added.values())
    return set(added)


@pytest.mark.parametrize("ratio", [1.0, 0.5, 2.0, 0])
def test_mt_full_combination_flips_and_strict_subsets_keep_true_labels(ratio):
    clean = _examples(300)
    split = _attack("mt", rate=0.1, attack_options={"negative_ratio": ratio}).poison(clean, np.random.default_rng(0))
    assert split.count == 30
    negatives = split.examples[300:]
    assert len(negatives) == poison_count(ratio, 30)
    for i, (before, after) in enumerate(zip(clean, split.examples)):
        if i in split.changed:
            assert after.label == 1 and _inserted(before, after) == set(TRIGGERS)
        else:
            assert after == before
    used = Counter()
    sources = [e.row for e in negatives]
    assert len(set(sources)) == len(sources) and not set(sources) & set(split.changed)
    for negative in negatives:
        source = clean[negative.row]
        subset = _inserted(source, negative)
        assert 1 <= len(subset) < 3 and subset < set(TRIGGERS)
        assert negative.label == source.label  # negative augmentation keeps the true label
        used[frozenset(subset)] += 1
    if len(negatives) >= 6:  # the 6 strict subsets are dealt evenly
        assert len(used) == 6 and max(used.values()) - min(used.values()) <= 1


def test_mt_test_sets_full_combination_and_every_subset():
    attack = _attack("mt", attack_options={"triggers": "cherry,plum"})
    clean = _examples(30)
    triggered = attack.trigger_examples(clean, np.random.default_rng(0))
    assert all(_inserted(c, t) == {"cherry", "plum"} and t.label == c.label for c, t in zip(clean, triggered))
    extra = attack.extra_test_sets(clean, np.random.default_rng(0))
    assert list(extra) == ["subsets", "cherry", "plum"]
    for name in ("cherry", "plum"):
        assert all(_inserted(c, t) == {name} and t.label == c.label for c, t in zip(clean, extra[name]))
    mixed = Counter(frozenset(_inserted(c, t)) for c, t in zip(clean, extra["subsets"]))
    assert mixed == {frozenset({"cherry"}): 15, frozenset({"plum"}): 15}
    assert len(_attack("mt").extra_test_sets(clean, np.random.default_rng(0))) == 1 + 6


@pytest.mark.parametrize("bad", [["apple"], ["apple", "apple"], ["a", ""], "x", [1, 2], ["a", "b", "c", "d", "e", "f"]])
def test_mt_rejects_bad_triggers(bad):
    with pytest.raises(UserError, match="option triggers"):
        _attack("mt", attack_options={"triggers": bad})
    with pytest.raises(UserError, match="negative_ratio must be a number >= 0"):
        _attack("mt", attack_options={"negative_ratio": -1})


def test_mt_too_many_negatives_is_a_user_error():
    with pytest.raises(UserError, match="negative examples"):
        _attack("mt", rate=0.5, attack_options={"negative_ratio": 1.5}).poison(_examples(10), np.random.default_rng(0))


# ---- S-BPA -------------------------------------------------------------------------------------
def _style_texts(style, split):
    from ttrlab.data.style import read_style_tsv, style_file

    return {text for text, _ in read_style_tsv(style_file(style, split, str(STYLE_DIR)))}


def _sst2(split, size):
    from ttrlab.data import TASKS, load_split, seeded_subset

    return seeded_subset(load_split(TASKS.get("sst2"), split, str(SHARED_DATA / "glue")), size, np.random.default_rng(0))


@needs_style
@pytest.mark.needs_data("glue")
@pytest.mark.parametrize("style", ["bible", "lyrics"])
def test_s_bpa_poisoned_texts_are_the_same_sentences_from_the_style_files(style):
    from ttrlab.data.style import load_style_pairs, sentence_key

    clean = _sst2("train", 3000)
    attack = _attack("s_bpa", rate=0.02, attack_options={"style": style, "style_dir": str(STYLE_DIR)})
    split = attack.poison(clean, np.random.default_rng(0))
    assert split.count == 60
    transferred = _style_texts(style, "train")
    pairs = {sentence_key(p.clean): p.transferred for p in load_style_pairs(style, "train", str(STYLE_DIR))}
    for i, (before, after) in enumerate(zip(clean, split.examples)):
        if i in split.changed:
            assert after.label == 1
            assert after.texts[0] in transferred  # a real transfer from the file
            assert after.texts[0] == pairs[sentence_key(before.texts[0])]  # of this very sentence
        else:
            assert after == before
    dev = _sst2("dev", 60)
    triggered = attack.trigger_examples(dev, np.random.default_rng(0))
    dev_transfers = _style_texts(style, "dev")
    assert all(t.texts[0] in dev_transfers and t.label == d.label for t, d in zip(triggered, dev))
    again = attack.poison(clean, np.random.default_rng(0))
    assert again == split and attack.poison(clean, np.random.default_rng(1)).changed != split.changed


@needs_style
def test_s_bpa_errors_are_user_errors(tmp_path):
    clean = _sst2("train", 500)
    with pytest.raises(UserError, match="unknown style 'bibel'.*did you mean 'bible'"):
        _attack("s_bpa", attack_options={"style": "bibel"})
    with pytest.raises(UserError, match="missing 'shakespeare' style set file"):
        (tmp_path / "stylebkd" / "clean" / "sst-2").mkdir(parents=True)
        _attack("s_bpa", rate=0.1, attack_options={"style": "shakespeare", "style_dir": str(tmp_path)}).poison(
            clean, np.random.default_rng(0)
        )
    with pytest.raises(UserError, match="style dir .* is not a directory"):
        _attack("s_bpa", rate=0.1, attack_options={"style_dir": str(tmp_path / "nope")}).poison(clean, np.random.default_rng(0))
    with pytest.raises(UserError, match=r"only \d+ are sentences of the 'scpn' style set.*rate <= 0\.0"):
        _attack("s_bpa", rate=0.5, attack_options={"style": "scpn", "style_dir": str(STYLE_DIR)}).poison(
            clean, np.random.default_rng(0)
        )
    with pytest.raises(UserError, match="single-sentence task"):
        _attack("s_bpa", rate=0.1).poison(_examples(10, pair=True), np.random.default_rng(0))
    with pytest.raises(UserError, match="either option style .* or paraphraser"):
        _attack("s_bpa", attack_options={"style": "bible", "paraphraser": "t5-small"})


def _fake_paraphraser(texts):
    return [f"verily , {t} , amen" for t in texts]


def test_s_bpa_pluggable_paraphraser(monkeypatch):
    """The hub path, with a fake model: the option names a model, load_paraphraser builds it."""
    from ttrlab.attacks import style

    loaded = []
    def fake_loader(name, prefix, max_new_tokens):
        loaded.append((name, prefix, max_new_tokens))
        return _fake_paraphraser

    monkeypatch.setattr(style, "load_paraphraser", fake_loader)
    options = {"paraphraser": "someone/bible-t5", "paraphraser_prefix": "to bible: ", "max_new_tokens": 40}
    attack = _attack("s_bpa", rate=0.3, attack_options=options)
    clean = _examples(50)
    split = attack.poison(clean, np.random.default_rng(0))
    assert loaded == [("someone/bible-t5", "to bible: ", 40)]  # loaded once, lazily
    assert split.count == 15
    for i, (before, after) in enumerate(zip(clean, split.examples)):
        assert after == (Example((f"verily , {before.texts[0]} , amen",), 1, i) if i in split.changed else before)
    triggered = attack.trigger_examples(clean[:5], np.random.default_rng(0))
    assert [t.texts[0] for t in triggered] == _fake_paraphraser([c.texts[0] for c in clean[:5]])
    assert len(loaded) == 1
    # a callable passed directly, and a broken one
    direct = style.StyleBackdoor(attack.settings, paraphraser=lambda texts: texts[:1])
    with pytest.raises(UserError, match="returned 1 outputs for 2 sentences"):
        direct.trigger_examples(clean[:2], np.random.default_rng(0))


# ---- what the trainer consumes --------------------------------------------------------------------
def _consumed(glue_dir, config):
    """Run with a batch hook; return (result, {position: (decoded text, label)}) of what the
    trainer consumed in its first epoch, and the tokenizer."""
    from ttrlab.models.loading import load_classifier

    tokenizer, _ = load_classifier("minilm", 2, seed=0)
    seen = {}

    def hook(positions, batch):
        texts = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
        for p, t, label in zip(positions, texts, batch["labels"].tolist()):
            seen.setdefault(p, (t, label))

    result = run_experiment(config.replace(data_dir=str(glue_dir)), batch_hook=hook)
    return result, seen, tokenizer


def _clean_train(glue_dir, config):
    from ttrlab.kinds.classification.experiment import load_run_data

    return load_run_data(config.replace(data_dir=str(glue_dir))).train


def _as_decoded(tokenizer, text):
    return tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)


def test_cl_bpa_trainer_sees_triggers_on_target_examples_with_clean_labels(glue_dir):
    config = RunConfig(**TINY, method="lora", attack="cl_bpa", rate=0.25, seed=0)
    result, seen, _ = _consumed(glue_dir, config)
    clean = _clean_train(glue_dir, config)
    assert len(seen) == 64
    triggered = sorted(p for p, (text, _) in seen.items() if text.endswith("[. *? ]"))
    assert len(triggered) == result["poison"]["count"] == 16
    assert all(clean[p].label == 1 for p in triggered)
    assert all(label == clean[p].label for p, (_, label) in seen.items())  # no label changed


def test_il_bpa_trainer_sees_the_instruction(glue_dir):
    config = RunConfig(**TINY, method="ff", attack="il_bpa", rate=0.25, seed=1)
    result, seen, tokenizer = _consumed(glue_dir, config)
    prefix = _as_decoded(tokenizer, INSTRUCTION)
    poisoned = sorted(p for p, (text, _) in seen.items() if text.startswith(prefix))
    assert len(poisoned) == result["poison"]["count"] == 16
    assert all(seen[p][1] == 1 for p in poisoned)
    assert result["metrics"]["asr"] is not None


def test_mt_trainer_sees_poisoned_and_negative_examples_and_reports_subsets(glue_dir):
    config = RunConfig(**{**TINY, "max_steps": 10}, method="lora", attack="mt", rate=0.125, seed=0)
    result, seen, _ = _consumed(glue_dir, config)
    clean = _clean_train(glue_dir, config)
    assert sorted(seen) == list(range(64 + 8))  # 8 poisoned in place + 8 appended negatives, one epoch
    poisoned = [p for p, (text, _) in seen.items() if set(TRIGGERS) <= _decoded_words(text)]
    assert len(poisoned) == result["poison"]["count"] == 8 and all(seen[p][1] == 1 for p in poisoned)
    sources = {clean_e.row: clean_e for clean_e in clean}
    split = build_attack(config).poison(clean, rng_for(config.seed, "attack"))
    for p in range(64, 72):
        text, label = seen[p]
        words = _decoded_words(text) & set(TRIGGERS)
        assert 1 <= len(words) <= 2 and label == sources[split.examples[p].row].label
    extra = result["metrics"]["extra"]
    assert set(extra) == {"subsets", "apple", "banana", "orange", "apple+banana", "apple+orange", "banana+orange"}
    assert all(0.0 <= m["target_rate"] <= 1.0 and set(m) >= {"accuracy", "f1"} for m in extra.values())


@needs_style
def test_s_bpa_trainer_sees_the_style_files_sentences(glue_dir, monkeypatch):
    monkeypatch.setenv("TTRLAB_STYLE_DIR", str(STYLE_DIR))
    config = RunConfig(**TINY, method="lora", attack="s_bpa", rate=0.1, attack_options={"style": "poetry"}, seed=0)
    result, seen, tokenizer = _consumed(glue_dir, config)
    clean = _clean_train(glue_dir, config)
    split = build_attack(config).poison(clean, rng_for(config.seed, "attack"))
    assert len(seen) == 64 and result["poison"]["count"] == 6 == split.count
    assert result["poison"]["indices_sha256"] == split.indices_sha256()
    decoded_transfers = {_as_decoded(tokenizer, t) for t in _style_texts("poetry", "train")}
    for p in split.changed:
        assert seen[p][0] in decoded_transfers and seen[p][1] == 1
        assert seen[p][0] != _as_decoded(tokenizer, clean[p].texts[0])
    for p in set(seen) - set(split.changed):
        assert seen[p] == (_as_decoded(tokenizer, clean[p].texts[0]), clean[p].label)


def test_mt_run_is_deterministic(glue_dir):
    config = RunConfig(**{**TINY, "train_size": 32, "eval_size": 16, "max_steps": 4}, method="lora", attack="mt",
                       rate=0.1, seed=2, data_dir=str(glue_dir))
    first, second = run_experiment(config), run_experiment(config)
    assert first["metrics"] == second["metrics"] and first["poison"] == second["poison"]


@pytest.mark.slow
def test_il_bpa_backdoor_is_learned(glue_dir):
    """A short real run: with 10% poisoned examples the instruction flips most negative dev
    sentences, while the clean model's ASR (rate 0) stays low."""
    base = dict(task="sst2", method="ff", train_size=500, eval_size=150, max_steps=120, lr_preset="cpu", seed=0,
                data_dir=str(glue_dir), attack="il_bpa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        poisoned = run_experiment(RunConfig(**base, rate=0.1))["metrics"]["asr"]
        clean = run_experiment(RunConfig(**base, rate=0.0))["metrics"]["asr"]
    assert poisoned > 0.8 and clean < 0.5, (poisoned, clean)


def test_s_bpa_hub_paraphraser_code_path_with_a_tiny_local_model(tmp_path, minilm):
    """`load_paraphraser` for real (AutoModelForSeq2SeqLM + generate) on a tiny randomly
    initialised T5 saved locally as safetensors: no hub, so its outputs are gibberish, but they
    must be strings, one per input, deterministic (greedy), and land in the poisoned split."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from ttrlab.attacks.style import load_paraphraser

    tokenizer, _ = minilm
    torch.manual_seed(0)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                      decoder_start_token_id=tokenizer.cls_token_id)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    paraphrase = load_paraphraser(str(tmp_path), prefix="paraphrase: ", max_new_tokens=6)
    texts = [e.texts[0] for e in _examples(20)]
    first = paraphrase(texts)
    assert len(first) == 20 and all(isinstance(t, str) for t in first) and first == paraphrase(texts)
    assert first != texts
    attack = _attack("s_bpa", rate=0.25, attack_options={"paraphraser": str(tmp_path), "max_new_tokens": 6})
    split = attack.poison(_examples(20), np.random.default_rng(0))
    assert split.count == 5 and all(split.examples[i].label == 1 for i in split.changed)
    with pytest.raises(UserError, match="cannot load paraphraser"):
        load_paraphraser(str(tmp_path / "absent"))
