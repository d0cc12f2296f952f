"""LoRA through peft with ttrlab's init: variance and distribution tested on the statistics
(Kolmogorov-Smirnov, as peft's own init tests do), not on one sample."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from ttrlab import RunConfig
from ttrlab.methods import INIT_STRATEGIES, METHODS
from ttrlab.models.loading import load_classifier


def _lora(config):
    _, model = load_classifier("minilm", 2, seed=config.seed)
    return METHODS.get("lora").prepare(model, config)


def _a_and_b(model):
    a = [m.weight.detach() for n, m in model.named_modules() if n.endswith("lora_A.default")]
    b = [m.weight.detach() for n, m in model.named_modules() if n.endswith("lora_B.default")]
    return a, b


@pytest.mark.parametrize(
    "init,scale",
    [("kaiming_uniform", None), ("kaiming_uniform", 0.001), ("kaiming_uniform", 2.0),
     ("gaussian", None), ("gaussian", 1.0), ("xavier_normal", None), ("xavier_normal", 0.33)],
)
def test_lora_init_variance_and_shape(minilm, init, scale):
    prepared = _lora(RunConfig(method="lora", rank=8, init=init, init_scale=scale, seed=1))
    a_mats, b_mats = _a_and_b(prepared.model)
    assert len(a_mats) == 12 and all(torch.count_nonzero(b) == 0 for b in b_mats)  # q,v x 6 layers; B = 0
    rank, fan_in = a_mats[0].shape
    assert (rank, fan_in) == (8, 384)
    expected_var = INIT_STRATEGIES.get(init).variance(fan_in, rank, scale)
    samples = torch.cat([a.flatten() for a in a_mats]).double().numpy()  # 36,864 draws
    assert samples.mean() == pytest.approx(0.0, abs=4 * math.sqrt(expected_var / samples.size))
    assert samples.var() == pytest.approx(expected_var, rel=0.03)
    std = math.sqrt(expected_var)
    if INIT_STRATEGIES.get(init).distribution == "uniform":
        bound = math.sqrt(3 * expected_var)
        reference = stats.uniform(loc=-bound, scale=2 * bound).cdf
        assert np.abs(samples).max() <= bound
    else:
        reference = stats.norm(scale=std).cdf
    assert stats.kstest(samples, reference).pvalue > 1e-3
    # the wrong shape must be rejected: the test can fail
    wrong = stats.norm(scale=std).cdf if reference.__self__.dist.name == "uniform" else stats.uniform(loc=-math.sqrt(3) * std, scale=2 * math.sqrt(3) * std).cdf
    assert stats.kstest(samples, wrong).pvalue < 1e-6


# The paper's official code (liangzid/LoRA-sSecurity, peft/src/peft/tuners/lora/layer.py,
# LoraLayer.reset_lora_parameters, var_type "1/d" with var_value k), each strategy's own torch call
# on an A of shape [r, n] — what ttrlab's draws are compared with, by distribution.
def _official_draw(init: str, k: float, rank: int, fan_in: int, seed: int) -> np.ndarray:
    a = torch.empty(rank, fan_in)
    torch.manual_seed(seed)
    if init == "kaiming_uniform":
        torch.nn.init.kaiming_uniform_(a, a=math.sqrt(max(2 / k - 1, 0)))
    elif init == "gaussian":
        torch.nn.init.normal_(a, std=math.sqrt(k / fan_in))
    else:
        torch.nn.init.xavier_normal_(a, math.sqrt(k))
    return a.flatten().double().numpy()


OFFICIAL_VAR_TIMES_N = {  # Var(A)·n by the official formulas, n = fan-in, r = rank
    "kaiming_uniform": lambda k, n, r: min(k, 2.0),
    "gaussian": lambda k, n, r: k,
    "xavier_normal": lambda k, n, r: 2 * k * n / (n + r),
}


@pytest.mark.parametrize("init", ["kaiming_uniform", "gaussian", "xavier_normal"])
@pytest.mark.parametrize("k", [0.333, 1.0, 2.0])
def test_init_strategies_follow_the_papers_official_code(init, k):
    rank, fan_in = 8, 384
    strategy = INIT_STRATEGIES.get(init)
    generator = torch.Generator().manual_seed(3)
    ours = torch.stack([torch.empty(rank, fan_in) for _ in range(64)])  # 64 As: 196,608 draws
    variance = [strategy.fill_(a, k, generator) for a in ours][0]
    official = np.concatenate([_official_draw(init, k, rank, fan_in, seed) for seed in range(64)])
    assert variance * fan_in == pytest.approx(OFFICIAL_VAR_TIMES_N[init](k, fan_in, rank))
    assert ours.double().var().item() * fan_in == pytest.approx(OFFICIAL_VAR_TIMES_N[init](k, fan_in, rank), rel=0.02)
    assert official.var() * fan_in == pytest.approx(OFFICIAL_VAR_TIMES_N[init](k, fan_in, rank), rel=0.02)
    assert stats.ks_2samp(ours.flatten().double().numpy(), official).pvalue > 1e-3


def test_gaussian_and_xavier_at_one_k_are_different_distributions():
    """The fidelity bug this guards: with a scale both once drew N(0, k/n), so Table 2's GI and XNI
    rows were one distribution. Now XNI's variance is 2n/(n + r) ≈ 1.96 times GI's at n = 384, r = 8."""
    draws = {}
    for init in ("gaussian", "xavier_normal"):
        generator = torch.Generator().manual_seed(0)
        a = torch.stack([torch.empty(8, 384) for _ in range(64)])
        for one in a:
            INIT_STRATEGIES.get(init).fill_(one, 1.0, generator)
        draws[init] = a.flatten().double().numpy()
    assert draws["xavier_normal"].var() / draws["gaussian"].var() == pytest.approx(2 * 384 / 392, rel=0.02)
    assert stats.ks_2samp(draws["gaussian"], draws["xavier_normal"]).pvalue < 1e-12


def test_xavier_runs_get_new_keys_and_the_others_keep_theirs():
    """XNI's distribution changed (revision 1): its runs' keys change, so a database's old XNI
    runs are never reused; Kaiming and GI runs keep their keys."""
    base = dict(method="lora", rank=8, attack="bpa", rate=0.01, seed=0, init_scale=1.0)
    xavier = RunConfig(**base, init="xavier_normal")
    assert xavier.identity_values()["init_revision"] == 1
    for init in ("kaiming_uniform", "gaussian"):
        assert "init_revision" not in RunConfig(**base, init=init).identity_values()
    assert "init_revision" not in RunConfig(method="ff", init="xavier_normal").identity_values()  # FF has no A


def test_default_kaiming_matches_peft_variance(minilm):
    """peft's default kaiming_uniform(a=sqrt(5)) has Var = 1/(3 n): our default k is 1/3."""
    prepared = _lora(RunConfig(method="lora", rank=16, seed=0))
    assert prepared.details["init_scale"] == pytest.approx(1 / 3)
    assert prepared.details["init_variance_example"]["variance"] == pytest.approx(1 / (3 * 384))


def test_lora_trains_adapters_and_full_head_only(minilm):
    prepared = _lora(RunConfig(method="lora", rank=4, seed=0))
    trainable = {n for n, p in prepared.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert any("classifier" in n and "lora" not in n for n in trainable)  # the head is trained fully
    assert prepared.trainable_parameters == 12 * 4 * (384 + 384) + 384 * 2 + 2


def test_all_linear_and_ff(minilm):
    all_linear = _lora(RunConfig(method="lora", rank=2, target_modules="all-linear", seed=0))
    assert all_linear.details["lora_modules"] > 12
    _, model = load_classifier("minilm", 2, seed=0)
    ff = METHODS.get("ff").prepare(model, RunConfig(method="ff"))
    assert ff.trainable_parameters == ff.total_parameters == 22_713_986


def test_init_is_seeded(minilm):
    a1, _ = _a_and_b(_lora(RunConfig(method="lora", seed=5)).model)
    a2, _ = _a_and_b(_lora(RunConfig(method="lora", seed=5)).model)
    a3, _ = _a_and_b(_lora(RunConfig(method="lora", seed=6)).model)
    assert all(torch.equal(x, y) for x, y in zip(a1, a2))
    assert not torch.equal(a1[0], a3[0])


def test_head_is_a_function_of_the_seed(minilm):
    _, m1 = load_classifier("minilm", 2, seed=3)
    torch.manual_seed(12345)  # global RNG state must not matter
    _, m2 = load_classifier("minilm", 2, seed=3)
    _, m3 = load_classifier("minilm", 2, seed=4)
    assert torch.equal(m1.classifier.weight, m2.classifier.weight)
    assert not torch.equal(m1.classifier.weight, m3.classifier.weight)
