"""The peft methods beyond plain LoRA (lora_fa, rslora, dora, pissa, olora, adalora, ia3,
prompt_tuning): each trains exactly the parameters it claims, on the real MiniLM and SmolLM2,
through classification, generation and theory runs; LoRA's "auto" targets on a GPT-2."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import SHARED_DATA
from ttrlab import RunConfig, run_experiment
from ttrlab.core.errors import UserError
from ttrlab.methods import METHODS
from ttrlab.models.loading import load_classifier

NEW = ("lora_fa", "rslora", "dora", "pissa", "olora", "adalora", "ia3", "prompt_tuning")
# the smallest real run: 16 SST-2 sentences, 2 steps, 8 dev sentences of at most 32 tokens
TINY = dict(task="sst2", model="minilm", train_size=16, eval_size=8, max_steps=2, batch_size=4, max_length=32,
            lr_preset="cpu")
HEAD = 384 * 2 + 2  # MiniLM's classifier, trained fully by every adapter method
LORA_R8 = 12 * 8 * (384 + 384)  # A and B of query, value in 6 layers


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on this 2-core machine shared with other jobs, LAPACK (PiSSA's SVD,
    OLoRA's QR) with 2 threads took 6-12 s per MiniLM instead of 0.2 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _prepare(name, **settings):
    _, model = load_classifier("minilm", 2, seed=0)
    return METHODS.get(name).prepare(model, RunConfig(**{"method": name, "seed": 0, **settings}).validate())


def _trainable(prepared):
    return {n: p for n, p in prepared.model.named_parameters() if p.requires_grad}


def _lora_a(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_A." in n}


# ---- what each method trains ------------------------------------------------------------------
def test_lora_fa_trains_b_and_head_only(minilm):
    prepared = _prepare("lora_fa")
    names = _trainable(prepared)
    assert names and not any(".lora_A." in n for n in names)
    assert sum(".lora_B." in n for n in names) == 12
    assert all(".lora_B." in n or "classifier" in n for n in names)
    assert prepared.trainable_parameters == 12 * 8 * 384 + HEAD
    assert prepared.details["frozen_lora_a_parameters"] == 12 * 8 * 384


def test_rslora_scales_by_alpha_over_sqrt_r(minilm):
    prepared = _prepare("rslora", rank=4, alpha=8.0)
    assert prepared.details["lora_scaling"] == pytest.approx(8 / math.sqrt(4))
    layer = prepared.model.get_submodule("base_model.model.bert.encoder.layer.0.attention.self.query")
    assert layer.scaling["default"] == pytest.approx(4.0)  # peft's own, not alpha / r = 2
    assert prepared.trainable_parameters == 12 * 4 * 768 + HEAD


def test_dora_trains_a_magnitude_vector_per_module(minilm):
    prepared = _prepare("dora")
    magnitudes = {n: p for n, p in _trainable(prepared).items() if "lora_magnitude_vector" in n}
    assert len(magnitudes) == 12 and all(p.numel() == 384 for p in magnitudes.values())
    assert prepared.trainable_parameters == LORA_R8 + 12 * 384 + HEAD


def test_ia3_trains_its_vectors_and_the_head_only(minilm):
    prepared = _prepare("ia3")
    names = _trainable(prepared)
    assert all(".ia3_l." in n or "classifier" in n for n in names)
    vectors = [p for n, p in names.items() if ".ia3_l." in n]
    # peft's BERT defaults: key, value, and both `output.dense` (attention and feed-forward) per layer
    assert len(vectors) == prepared.details["ia3_vectors"] == 24
    assert all(torch.equal(v, torch.ones_like(v)) for v in vectors)  # the model is unchanged at step 0
    assert prepared.trainable_parameters == sum(v.numel() for v in vectors) + HEAD
    assert prepared.details["feedforward_modules"] == ["output.dense"]


def test_prompt_tuning_trains_the_prompt_and_head_only(minilm):
    prepared = _prepare("prompt_tuning", prompt_tokens=5)
    names = _trainable(prepared)
    assert set(names) == {"prompt_encoder.default.embedding.weight", "base_model.classifier.modules_to_save.default.weight",
                          "base_model.classifier.modules_to_save.default.bias"}
    assert prepared.trainable_parameters == 5 * 384 + HEAD
    # the prompt starts as real vocabulary embeddings, drawn from the seed
    vocabulary = prepared.model.word_embeddings.weight
    prompt = names["prompt_encoder.default.embedding.weight"]
    assert all(any(torch.equal(row, v) for v in vocabulary) for row in prompt[:2])
    again = _prepare("prompt_tuning", prompt_tokens=5)
    assert torch.equal(prompt, _trainable(again)["prompt_encoder.default.embedding.weight"])


def test_adalora_trains_svd_triplets_and_head(minilm):
    prepared = _prepare("adalora", max_steps=10)
    names = _trainable(prepared)
    kinds = {n.split(".")[-2] for n in names if ".lora_" in n}
    assert kinds == {"lora_A", "lora_B", "lora_E"}
    assert all(".lora_" in n or "classifier" in n for n in names)
    assert prepared.trainable_parameters == 12 * (12 * 384 + 384 * 12 + 12) + HEAD
    assert prepared.after_step is not None
    assert prepared.details["total_step"] == 10 and prepared.details["tfinal"] >= 1


@pytest.mark.parametrize("name", ["pissa", "olora"])
def test_pissa_and_olora_derive_a_from_w_not_ttrlab_init(minilm, name):
    tokenizer, _ = load_classifier("minilm", 2, seed=0)
    batch = tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt")
    _, plain = load_classifier("minilm", 2, seed=0)
    with torch.no_grad():
        before = plain.eval()(**batch).logits
    prepared = _prepare(name)
    lora = _prepare("lora")
    ours, theirs = _lora_a(lora.model), _lora_a(prepared.model)
    assert ours.keys() == theirs.keys() and len(ours) == 12
    assert all(not torch.allclose(ours[n], theirs[n]) for n in ours)
    assert prepared.details["init"].startswith(name)
    # W keeps the residual W - s·BA, so the adapted model computes what the pretrained one did
    with torch.no_grad():
        after = prepared.model.eval()(**batch).logits
    assert torch.allclose(before, after, atol=1e-3)
    base_q = prepared.model.get_submodule("base_model.model.bert.encoder.layer.0.attention.self.query").base_layer.weight
    assert not torch.allclose(base_q, plain.bert.encoder.layer[0].attention.self.query.weight)


def test_pissa_refuses_ttrlabs_init_settings():
    with pytest.raises(UserError, match="derives A from the pretrained weights"):
        RunConfig(method="pissa", init_scale=0.5).validate()
    with pytest.raises(UserError, match="adalora_target_r 20"):
        RunConfig(method="adalora", adalora_target_r=20).validate()


def test_method_settings_stay_out_of_other_methods_identity():
    assert RunConfig(method="lora").run_key() == RunConfig(method="lora", adalora_init_r=4, prompt_tokens=3).run_key()
    assert RunConfig(method="ia3").run_key() == RunConfig(method="ia3", rank=2).run_key()
    assert RunConfig(method="adalora").run_key() != RunConfig(method="adalora", adalora_init_r=4).run_key()
    assert RunConfig(method="lora_fa").run_key() != RunConfig(method="lora").run_key()


# ---- real training ----------------------------------------------------------------------------
def test_lora_fa_leaves_a_bit_identical_after_training(minilm):
    config = RunConfig(**{**TINY, "max_steps": 3}, method="lora_fa", seed=2)
    initial = _prepare("lora_fa", seed=2)
    a0 = _lora_a(initial.model)
    b0 = {n: p.detach().clone() for n, p in initial.model.named_parameters() if ".lora_B." in n}
    result = run_experiment(config, keep_model=True)
    trained = result["_model"]
    a1 = _lora_a(trained)
    assert a1.keys() == a0.keys() and len(a0) == 12
    assert all(torch.equal(a0[n], a1[n]) for n in a0)  # bit-identical
    b1 = {n: p.detach() for n, p in trained.named_parameters() if ".lora_B." in n}
    assert all(not torch.equal(b0[n], b1[n]) for n in b0)  # every B moved off 0
    assert result["train"]["steps"] == 3


def test_adalora_reallocates_its_rank_budget_and_is_deterministic(minilm, monkeypatch):
    from peft.tuners.adalora import AdaLoraModel

    calls = []
    original = AdaLoraModel.update_and_allocate
    monkeypatch.setattr(AdaLoraModel, "update_and_allocate",
                        lambda self, step: (calls.append(step), original(self, step))[1])
    # 4 steps: tinit 0, tfinal 1 -> the budget shrinks at steps 0-2, ranks are fixed at step 3
    config = RunConfig(**{**TINY, "max_steps": 4}, method="adalora", adalora_init_r=4, adalora_target_r=2,
                       adalora_tinit=0.0, adalora_tfinal=0.25, seed=1)
    first = run_experiment(config, keep_model=True)
    assert calls == [0, 1, 2, 3]
    model = first.pop("_model")
    first.pop("_tokenizer")
    singular = [p.detach() for n, p in model.named_parameters() if ".lora_E." in n]
    kept = sum(int(torch.count_nonzero(e)) for e in singular)
    assert len(singular) == 12 and kept <= 12 * 2 < 12 * 4  # pruned to the target budget
    assert model.peft_config["default"].rank_pattern is not None
    second = run_experiment(config)
    assert first["metrics"] == second["metrics"] and first["train"]["final_loss"] == second["train"]["final_loss"]


@pytest.mark.parametrize("name", [n for n in NEW if n not in ("lora_fa", "adalora")])
def test_each_method_trains_a_classifier(minilm, name):
    result = run_experiment(RunConfig(**TINY, method=name, seed=0))
    assert result["method"]["name"] == name and result["train"]["steps"] == 2
    assert math.isfinite(result["train"]["final_loss"])
    assert 0 < result["method"]["trainable_parameters"] < result["method"]["total_parameters"] / 100
    assert 0.0 <= result["metrics"]["clean"]["accuracy"] <= 1.0


@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("gguf")
    from ttrlab.models.causal_lm import load_causal_lm

    return load_causal_lm("smollm2")


GEN_TINY = {"data_dir": str(SHARED_DATA), "n_clean": 4, "rate": 0.2, "max_steps": 1, "batch_size": 2,
            "max_length": 48, "n_eval": 1, "max_new_tokens": 1, "n_utility": 1, "n_utility_generate": 0,
            "adalora_init_r": 2, "adalora_target_r": 1, "rank": 2, "prompt_tokens": 2}


@pytest.mark.needs_data("backdoorllm")
@pytest.mark.parametrize("name", NEW)
def test_each_method_trains_smollm2(smol, name):
    from ttrlab.kinds.generative.config import GenConfig
    from ttrlab.kinds.generative.experiment import run_generative

    result = run_generative(GenConfig.from_dict({**GEN_TINY, "method": name}).validate())
    assert result["method"]["name"] == name and result["train"]["steps"] == 1
    assert math.isfinite(result["train"]["final_loss"])
    assert 0 < result["method"]["trainable_parameters"] < result["method"]["total_parameters"] / 100
    assert math.isfinite(result["metrics"]["utility_perplexity"])


# ---- theory -----------------------------------------------------------------------------------
def test_theory_run_with_dora_and_ia3(minilm):
    from ttrlab.kinds.theory.config import TheoryConfig
    from ttrlab.kinds.theory.experiment import compute_theory

    small = dict(task="sst2", model="minilm", attack="bpa", rate=0.5, n=2, train_size=20, seed=3, quantity="ntk")
    for name in ("dora", "ia3"):
        result = compute_theory(TheoryConfig.from_dict({**small, "method": name}).validate())
        groups = result["method"]["parameter_groups"]
        assert groups["head"] == HEAD and groups["adapters"] == result["method"]["trainable_parameters"] - HEAD
        assert "body" not in groups  # every adapter parameter is an adapter (ia3_l, lora_magnitude_vector)


def test_dora_kernel_matches_the_brute_force(minilm):
    """DoRA runs lora_A, lora_B on an identity matrix too (weight norm): the layer-wise engine must
    leave them to the Jacobian one, or its hooks record rows of no sample."""
    from ttrlab.theory.ntk import empirical_ntk, naive_ntk
    from ttrlab.training.loop import pad_batch

    tokenizer = minilm[0]
    prepared = _prepare("dora", rank=2)
    with torch.no_grad():
        for name, parameter in _trainable(prepared).items():
            if ".lora_B." in name:
                parameter.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))  # B = 0 hides A's gradient
    batch = pad_batch(tokenizer, [dict(tokenizer(t)) for t in ("a fine film", "dull and long")])
    fast, reference = empirical_ntk(prepared.model, batch), naive_ntk(prepared.model, batch)
    assert fast.details["engine"]["jacobian"] == 12 * 3  # A, B, magnitude of each DoRA module
    assert torch.allclose(fast.kernel, reference.kernel, rtol=1e-5, atol=1e-6 * float(reference.kernel.abs().max()))


def test_prompt_tuning_is_refused_by_theory_in_one_line(capsys):
    from ttrlab.cli import main
    from ttrlab.kinds.theory.config import TheoryConfig

    with pytest.raises(UserError, match="method 'prompt_tuning' does not apply to theory runs; allowed: .*ia3"):
        TheoryConfig(method="prompt_tuning").validate()
    with pytest.raises(UserError, match="quantity 'spectrum'"):
        TheoryConfig(method="pissa", quantity="spectrum").validate()
    assert main(["theory", "ntk", "--method", "prompt_tuning", "--n", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "prompt_tuning" in err


# ---- LoRA's target modules: peft's default for the architecture -------------------------------
def test_lora_auto_targets_on_gpt2_and_minilm_keys_unchanged(tmp_path, minilm):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=64,
                                                    num_labels=2, pad_token_id=0))
    gpt2.save_pretrained(tmp_path / "gpt2")
    config = RunConfig(model=str(tmp_path / "gpt2"), method="lora", rank=2).validate()
    assert config.target_modules == "auto" and config.resolved()["target_modules"] == "c_attn"
    prepared = METHODS.get("lora").prepare(gpt2, config)
    assert prepared.details["lora_modules"] == 2  # c_attn of each block
    names = _trainable(prepared)
    assert all("c_attn.lora_" in n or ".score." in n for n in names)
    out = prepared.model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([1]))
    out.loss.backward()
    assert all(p.grad is not None for n, p in names.items() if "lora_A" in n)
    # MiniLM: auto resolves to peft's BERT entry, the old written-out default, so keys stay
    assert RunConfig(method="lora").resolved()["target_modules"] == "query,value"
    assert RunConfig(method="lora").run_key() == RunConfig(method="lora", target_modules="query,value").run_key()


def test_methods_command_lists_every_method_with_its_kinds(capsys):
    from ttrlab.cli import main

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in METHODS.registered():
        line = next(line for line in lines if line.split()[0] == name)
        assert METHODS.get(name).summary in line and ",".join(METHODS.get(name).kinds) in line
