"""Empirical NTK (Eq. 6): exact against a brute-force per-sample gradient loop on a tiny BERT,
for FF and LoRA; symmetric PSD; FF ⪰ LoRA only where the maths guarantees it."""
import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from ttrlab.kinds.classification.config import RunConfig
from ttrlab.methods import METHODS
from ttrlab.theory._src.hf import eager_attention, sequence_classifier_function
from ttrlab.theory.ntk import empirical_ntk, naive_ntk, trainable_names

torch.set_num_threads(1)


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2,
                        hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    return BertForSequenceClassification(config)


def batch(n=5, length=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    for i in range(n):  # ragged lengths: padding must not change anything
        mask[i, 3 + i % (length - 3):] = 0
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def lora(model, rank=2, scale=None, alpha=4.0, randomize_b=True):
    config = RunConfig(method="lora", rank=rank, alpha=alpha, init_scale=scale, target_modules="query,value")
    prepared = METHODS.get("lora").prepare(model, config).model
    if randomize_b:  # away from init, so ∂F/∂A ≠ 0 and every adapter term is exercised
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for name, p in prepared.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return prepared


def assert_same(a, b):
    scale = b.kernel.abs().max()
    assert (a.kernel - b.kernel).abs().max() <= 1e-5 * scale
    assert set(a.groups) == set(b.groups)
    for g in a.groups:
        assert (a.groups[g] - b.groups[g]).abs().max() <= 1e-5 * scale


def test_ff_matches_brute_force_with_chunks_and_sparse_embeddings():
    model = tiny_bert()
    x = batch()
    fast = empirical_ntk(model, x, engine="jacobian", max_jacobian_bytes=40 * 1024)  # forces many chunks
    assert fast.chunks > 3
    assert fast.details["sparse_embedding_rows"]["bert.embeddings.word_embeddings.weight"] < 50
    slow = naive_ntk(model, x)
    assert_same(fast, slow)
    assert fast.parameters == slow.parameters
    assert sum(fast.parameters.values()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("engine", ["layerwise", "jacobian"])
def test_lora_matches_brute_force_with_head_and_adapters_groups(engine):
    model = lora(tiny_bert())
    x = batch()
    fast = empirical_ntk(model, x, engine=engine)
    slow = naive_ntk(model, x)
    assert set(fast.groups) == {"adapters", "head"}
    assert_same(fast, slow)
    adapters_only = empirical_ntk(model, x, trainable_names(model, groups=("adapters",)), engine=engine)
    assert torch.allclose(adapters_only.kernel, fast.groups["adapters"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("engine", ["layerwise", "jacobian"])
def test_kernel_is_symmetric_psd_and_dropout_is_off(engine):
    model = tiny_bert()
    model.train()  # the NTK must still be computed without dropout
    x = batch()
    k1 = empirical_ntk(model, x, engine=engine).matrix()
    k2 = empirical_ntk(model, x, engine=engine).matrix()
    assert torch.equal(k1, k2)
    assert torch.allclose(k1, k1.T, atol=1e-9 * k1.abs().max())
    assert torch.linalg.eigvalsh(k1).min() >= -1e-6 * k1.abs().max()


def test_padded_vmapped_logits_equal_the_model():
    model = tiny_bert().eval()
    x = batch()
    f, keys = sequence_classifier_function(model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    with eager_attention(model):
        mine = torch.func.vmap(f, in_dims=(None, 0, 0, 0))(params, *(x[k] for k in keys))
    for i in range(x["input_ids"].shape[0]):
        n = int(x["attention_mask"][i].sum())
        alone = model(input_ids=x["input_ids"][i:i + 1, :n], token_type_ids=x["token_type_ids"][i:i + 1, :n]).logits[0]
        assert torch.allclose(mine[i], alone, atol=1e-5)


def test_layerwise_engine_matches_brute_force_in_small_ghost_blocks_and_wide_batches(monkeypatch):
    """Every parameter through the layer-wise engine (BERT's position embeddings arrive
    batch-broadcast as [1, L] and must still come out per sample); tiny ghost blocks and a
    one-byte budget force many blocks, explicit vs ghost choices and one pass per layer."""
    from ttrlab.theory._src import layerwise

    model = tiny_bert()
    x = batch(n=9, length=8)
    slow = naive_ntk(model, x)
    whole = empirical_ntk(model, x, engine="layerwise")
    assert whole.details["engine"] == {"layerwise": len(trainable_names(model)), "jacobian": 0}
    assert whole.chunks == 0
    assert_same(whole, slow)
    monkeypatch.setattr(layerwise, "GHOST_BLOCK_ROWS", 6)
    blocked = empirical_ntk(model, x, engine="layerwise", max_jacobian_bytes=1, bucket_size=2)
    assert_same(blocked, slow)
    assert torch.allclose(blocked.logits, slow.logits, atol=1e-5)


def test_auto_sends_unsupported_parameters_to_the_jacobian_engine():
    """A parameter outside Linear/LayerNorm/Embedding (here a bare scale on the classifier's input)
    goes to the Jacobian engine; the sum still matches the brute force."""
    model = tiny_bert()
    model.register_parameter("input_scale", torch.nn.Parameter(torch.tensor(1.3)))
    model.classifier.register_forward_pre_hook(lambda mod, args: (args[0] * model.input_scale,))
    x = batch()
    fast = empirical_ntk(model, x)
    assert fast.details["engine"]["jacobian"] == 1
    assert_same(fast, naive_ntk(model, x))


def test_tied_weights_and_weights_used_outside_their_module_go_to_the_jacobian_engine():
    """Hooks on one module cannot see a weight's other uses: a weight tied between two Linears,
    and one read directly (F.linear) while its module's forward never runs, must be routed to the
    Jacobian engine, so the kernel still matches the brute force."""
    model = tiny_bert()
    torch.manual_seed(5)
    model.extra, model.twin, model.direct = (torch.nn.Linear(16, 16) for _ in range(3))
    model.twin.weight = model.extra.weight  # tied

    def mix(mod, args):
        x = args[0]
        return (x + 0.5 * model.extra(x) + 0.5 * model.twin(x)
                + 0.5 * torch.nn.functional.linear(x, model.direct.weight, model.direct.bias),)

    model.classifier.register_forward_pre_hook(mix)
    x = batch()
    fast = empirical_ntk(model, x)
    # extra.weight (tied), direct.weight and direct.bias (module never called)
    assert fast.details["engine"]["jacobian"] == 3
    slow = naive_ntk(model, x)
    assert_same(fast, slow)
    # a budget of one layer per pass: `direct` is a pass of its own in which no module runs
    assert_same(empirical_ntk(model, x, max_jacobian_bytes=4096), slow)
    from ttrlab.core.errors import UserError

    with pytest.raises(UserError, match="engine 'layerwise' does not support"):
        empirical_ntk(model, x, engine="layerwise")


def test_layerwise_engine_refuses_what_it_cannot_do():
    from ttrlab.core.errors import UserError

    model = tiny_bert()
    with pytest.raises(UserError, match="engine 'turbo' is not one of"):
        empirical_ntk(model, batch(), engine="turbo")
    with pytest.raises(UserError, match="sample_function needs engine 'jacobian'"):
        empirical_ntk(model, batch(), engine="layerwise", sample_function=sequence_classifier_function(model))


def _max_scaled_ata(model, s):
    return max(s**2 * torch.linalg.eigvalsh(p.detach() @ p.detach().T).max().item()
               for n, p in model.named_parameters() if "lora_A" in n)


def test_ff_dominates_lora_where_guaranteed():
    """At init (B = 0) LoRA's kernel is Σ ⟨G A ᵀA s², G'⟩ + head, FF's is Σ ⟨G, G'⟩ + head + ...:
    K_FF − K_LoRA ⪰ 0 whenever s²·λ_max(AᵀA) ≤ 1 for every adapter (Theorem 3.3's Δ_r ⪯ 0)."""
    base = tiny_bert()
    x = batch()
    ff = empirical_ntk(copy.deepcopy(base), x).matrix()
    adapted = lora(copy.deepcopy(base), rank=2, scale=0.3, alpha=2.0, randomize_b=False)
    assert _max_scaled_ata(adapted, 1.0) <= 1.0  # the condition holds for this draw
    low = empirical_ntk(adapted, x).matrix()
    assert torch.linalg.eigvalsh(ff - low).min() >= -1e-6 * ff.abs().max()
    # the head is shared, so K_LoRA's head part equals FF's head part exactly
    ff_groups = empirical_ntk(copy.deepcopy(base), x).groups
    assert torch.allclose(ff_groups["head"], empirical_ntk(adapted, x).groups["head"], rtol=1e-6)


def test_unknown_parameter_is_a_user_error():
    from ttrlab.core.errors import UserError

    with pytest.raises(UserError):
        empirical_ntk(tiny_bert(), batch(), ["no.such.weight"])


# ---- attention implementation, device, precision ---------------------------------------------
def attention_implementations(model):
    from transformers import PreTrainedModel

    return [m.config._attn_implementation for m in model.modules() if isinstance(m, PreTrainedModel)]


def minilm_lora(minilm, rank=4):
    """MiniLM with LoRA (r = 4 on query/value, B away from 0) and a few real sentences."""
    tokenizer, template = minilm
    model = lora(copy.deepcopy(template), rank=rank)
    texts = ["a gripping, funny film", "dull and far too long", "not bad at all",
             "the worst thing I have seen this year, truly"]
    return model, dict(tokenizer(texts, padding=True, return_tensors="pt"))


def test_the_model_keeps_its_attention_implementation():
    """The engines need eager attention; a model that came with sdpa leaves with sdpa, its own
    logits unchanged, also when the computation raises (MiniLM: the bf16 test below)."""
    model, x = lora(tiny_bert()).eval(), batch()
    assert set(attention_implementations(model)) == {"sdpa"}
    with torch.no_grad():
        before = model(**x).logits
    for compute in (lambda: empirical_ntk(model, x), lambda: empirical_ntk(model, x, engine="jacobian"),
                    lambda: naive_ntk(model, x)):
        compute()
        assert set(attention_implementations(model)) == {"sdpa"}
    from ttrlab.core.errors import UserError

    model.unused = torch.nn.Linear(2, 2)  # its forward never runs: the layer-wise engine refuses it mid-way
    with pytest.raises(UserError, match="are not used through their module's forward"):
        empirical_ntk(model, x, ["unused.weight", "unused.bias"], engine="layerwise")
    assert set(attention_implementations(model)) == {"sdpa"}
    with torch.no_grad():
        assert torch.equal(model(**x).logits, before)


class FactoryWatch(torch.overrides.TorchFunctionMode):
    """Records every tensor factory (torch.zeros, full, arange, eye, ...) called without a device
    from a file under `root`: on a GPU such a tensor would be made on the CPU."""

    def __init__(self, root):
        super().__init__()
        import torch.utils._device

        self.root, self.calls = str(root), []
        self.factories = torch.utils._device._device_constructors()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.factories and kwargs.get("device") is None:
            import sys

            frame = sys._getframe(1)
            while frame is not None and "/torch/" in frame.f_code.co_filename:
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(self.root):
                self.calls.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {func.__name__}")
        return func(*args, **kwargs)


def test_the_engines_make_every_tensor_on_the_device_of_the_batch():
    """No GPU here: every factory call the engines make must name its device, so that on a GPU
    nothing lands on the CPU (FactoryWatch; it does catch a call without one)."""
    from pathlib import Path

    import ttrlab.theory

    with FactoryWatch(Path(__file__)) as watch:
        torch.zeros(2)
    assert len(watch.calls) == 1
    model = lora(tiny_bert())
    model.register_parameter("input_scale", torch.nn.Parameter(torch.tensor(1.3)))  # → Jacobian engine
    model.classifier.register_forward_pre_hook(lambda mod, args: (args[0] * model.input_scale,))
    x = batch()
    with FactoryWatch(Path(ttrlab.theory.__file__).parent) as watch:
        empirical_ntk(model, x)  # layer-wise and Jacobian engines
        empirical_ntk(tiny_bert(), x, engine="jacobian", max_jacobian_bytes=40 * 1024)  # sparse embedding rows
        empirical_ntk(tiny_bert(), x, engine="layerwise", max_jacobian_bytes=1, bucket_size=2)
        naive_ntk(model, x)
    assert watch.calls == []


@pytest.mark.parametrize("engine", ["layerwise", "jacobian"])
def test_fp32_is_untouched_by_the_precision_handling(engine, monkeypatch):
    """Without autocast the precision layer is inert: the kernel is bit-identical with it replaced
    by no-ops (what remains is the engines' arithmetic as it was: same kernels as before the
    precision handling existed, checked once against the previous commit), and inside an fp32
    run's `Runtime.autocast()`."""
    import contextlib

    from ttrlab.models.runtime import Runtime
    from ttrlab.theory._src import layerwise, precision

    model, x = lora(tiny_bert()), batch()
    plain = empirical_ntk(model, x, engine=engine)
    with Runtime.resolve("cpu", "fp32").autocast():
        assert torch.equal(empirical_ntk(model, x, engine=engine).kernel, plain.kernel)
    for module in (precision, layerwise):
        monkeypatch.setattr(module, "widen", lambda t: t)
        monkeypatch.setattr(module, "exact", lambda device: contextlib.nullcontext())
    bare = empirical_ntk(model, x, engine=engine)
    assert torch.equal(bare.kernel, plain.kernel) and torch.equal(bare.logits, plain.logits)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["layerwise", "jacobian", "auto"])
def test_bf16_kernel_is_close_to_fp32(minilm, engine, monkeypatch):
    """A bf16 run (autocast on the CPU) computes the kernel of the model as bf16 computes it.
    Measured on these 4 sentences, max |K_bf16 − K_fp32| over the largest entry, per group:
    layer-wise adapters 3.8e-3, head 2.4e-3; Jacobian adapters 3.5e-3, head 1.8e-3 (8 sentences:
    up to 8.9e-3 for the Jacobian engine's adapters). That is one to two bf16 unit round-offs
    (2⁻⁸ = 3.9e-3) of the forward: tolerance 1e-2. It must also differ from fp32 (the forward did
    run in bf16), and the contractions must add nothing: float64 contractions of the same bf16
    records agree to 1e-6 (measured 7e-8–9e-8; bf16 contractions would be off by ~1e-3)."""
    from ttrlab.models.runtime import Runtime
    from ttrlab.theory._src import layerwise, precision

    model, x = minilm_lora(minilm)
    assert set(attention_implementations(model)) == {"sdpa"}
    fp32 = empirical_ntk(model, x, engine=engine)
    with Runtime.resolve("cpu", "bf16").autocast():
        bf16 = empirical_ntk(model, x, engine=engine)
    assert bf16.kernel.dtype == torch.float64 and bf16.details["engine"] == fp32.details["engine"]
    assert torch.is_autocast_enabled("cpu") is False
    assert set(attention_implementations(model)) == {"sdpa"}
    for group, reference in fp32.groups.items():
        deviation = float((bf16.groups[group] - reference).abs().max() / reference.abs().max())
        assert 1e-5 < deviation < 1e-2, (group, deviation)
    assert float((bf16.logits - fp32.logits).abs().max()) < 2e-3
    widest = lambda t: t.double() if t.is_floating_point() else t  # noqa: E731
    monkeypatch.setattr(precision, "widen", widest)
    monkeypatch.setattr(layerwise, "widen", widest)
    with Runtime.resolve("cpu", "bf16").autocast():
        float64 = empirical_ntk(model, x, engine=engine)
    assert float((float64.kernel - bf16.kernel).abs().max() / bf16.kernel.abs().max()) < 1e-6
