"""End-to-end runs on the real MiniLM and real SST-2/MRPC: poisoned data reaches the trainer,
training moves the model, runs are pure functions of their config."""
import pytest

from ttrlab import RunConfig, run_experiment
from ttrlab.core.streams import rng_for

TINY = dict(task="sst2", model="minilm", train_size=64, eval_size=32, max_steps=8, batch_size=8, lr_preset="cpu")


def _decode_batches(glue_dir, config):
    """Run with a batch hook; return what the trainer consumed: (position, decoded text, label)."""
    from ttrlab.models.loading import load_classifier

    tokenizer, _ = load_classifier("minilm", 2, seed=0)
    seen = []

    def hook(positions, batch):
        texts = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
        seen.extend(zip(positions, texts, batch["labels"].tolist()))

    result = run_experiment(config.replace(data_dir=str(glue_dir)), batch_hook=hook)
    return result, seen


def test_bpa_poisoned_examples_are_what_the_trainer_sees(glue_dir):
    """The paper's own code poisons a copy that never reaches training: here every batch is
    decoded and the triggered examples must be exactly the recorded poisoned positions."""
    config = RunConfig(**TINY, method="lora", attack="bpa", rate=0.25, seed=0)
    result, seen = _decode_batches(glue_dir, config)
    assert len(seen) == 64  # 8 steps x 8 = one full epoch, every example once
    triggered = sorted(p for p, text, _ in seen if text.endswith("[. *? ]"))
    assert len(triggered) == result["poison"]["count"] == 16
    from ttrlab.attacks import build_attack
    from ttrlab.kinds.classification.experiment import load_run_data

    train = load_run_data(config.replace(data_dir=str(glue_dir))).train
    split = build_attack(config).poison(train, rng_for(config.seed, "attack"))
    assert triggered == list(split.changed)
    assert split.indices_sha256() == result["poison"]["indices_sha256"]
    assert all(label == 1 for p, _, label in seen if p in split.changed)


def test_upa_flipped_labels_are_what_the_trainer_sees(glue_dir):
    from ttrlab.kinds.classification.experiment import load_run_data

    config = RunConfig(**TINY, method="lora", attack="upa", rate=0.5, seed=1)
    result, seen = _decode_batches(glue_dir, config)
    clean = load_run_data(config.replace(data_dir=str(glue_dir))).train
    flipped = sorted(p for p, _, label in seen if label != clean[p].label)
    assert len(flipped) == result["poison"]["count"] == 32


def test_pair_task_trains_with_both_sentences(glue_dir):
    config = RunConfig(task="mrpc", train_size=16, eval_size=16, max_steps=1, batch_size=4, method="ff",
                       lr_preset="cpu", data_dir=str(glue_dir))
    batches = []
    result = run_experiment(config, batch_hook=lambda positions, batch: batches.append(batch))
    assert result["train"]["steps"] == 1 and result["train"]["final_loss"] > 0
    batch = batches[0]
    assert (batch["token_type_ids"] == 1).any()  # the second segment is a real second segment
    sep = 102  # [SEP] of the BERT vocabulary: two per pair (after each segment)
    assert ((batch["input_ids"] == sep).sum(dim=1) == 2).all()


def test_same_config_same_result(glue_dir):
    config = RunConfig(**TINY, method="lora", attack="bpa", rate=0.1, seed=3, data_dir=str(glue_dir))
    first, second = run_experiment(config), run_experiment(config)
    assert first["metrics"] == second["metrics"]
    assert first["train"]["final_loss"] == second["train"]["final_loss"]
    assert first["poison"] == second["poison"]
    other = run_experiment(config.replace(seed=4))
    assert other["poison"]["indices_sha256"] != first["poison"]["indices_sha256"]


def test_result_document_schema(glue_dir):
    result = run_experiment(RunConfig(**TINY, method="lora", attack="bpa", rate=0.1, data_dir=str(glue_dir)))
    assert set(result["config"]) >= {"task", "method", "rank", "seed", "lr", "attack", "rate"}
    assert set(result["versions"]) >= {"torch", "transformers", "peft", "ttrlab"}
    assert set(result["poison"]) >= {"count", "indices_sha256"}
    assert set(result["metrics"]["clean"]) == {"accuracy", "precision", "recall", "f1"}
    assert set(result["metrics"]["triggered"]) == {"accuracy", "precision", "recall", "f1"}
    assert 0.0 <= result["metrics"]["asr"] <= 1.0
    assert set(result["train"]) >= {"steps", "seconds", "tokens_per_second", "final_loss"}
    assert result["train"]["tokens_per_second"] > 0


@pytest.mark.slow
def test_training_learns_and_upa_at_full_rate_inverts_it(glue_dir):
    """Real learning: clean training is far above chance; flipping every label drives the
    model far below chance (it learns the inverted task)."""
    base = dict(task="sst2", method="lora", train_size=600, eval_size=200, max_steps=150, lr_preset="cpu",
                seed=0, data_dir=str(glue_dir))
    clean = run_experiment(RunConfig(**base, attack="upa", rate=0.0))["metrics"]["clean"]["accuracy"]
    flipped = run_experiment(RunConfig(**base, attack="upa", rate=1.0))["metrics"]["clean"]["accuracy"]
    assert clean > 0.7, clean
    assert flipped < 0.3, flipped
