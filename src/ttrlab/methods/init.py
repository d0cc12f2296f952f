"""Initialisation strategies for LoRA's A matrix, with the paper's variance scale k.

The paper's official code (github liangzid/LoRA-sSecurity, its vendored
`peft/src/peft/tuners/lora/layer.py`, `LoraLayer.reset_lora_parameters`, the `var_type == "1/d"`
branch its scripts use, with `var_value` = k) defines each strategy's scale differently; ttrlab
follows it. A ∈ R^{r×n} (n = fan-in, r = rank), mean 0, B = 0:

| strategy        | draw    | Var(A) with a scale k          | the official code                                   | Var(A) without k (peft)   |
|-----------------|---------|--------------------------------|-----------------------------------------------------|---------------------------|
| kaiming_uniform | uniform | k / n                          | `kaiming_uniform_(A, a=sqrt(2/k − 1))` (fan-in n)   | 1/(3n): k = 1/3           |
| gaussian        | normal  | k / n                          | `normal_(A, std=sqrt(k/n))`                         | 1/r²: `normal_(std=1/r)`  |
| xavier_normal   | normal  | 2k / (n + r)                   | `xavier_normal_(A, gain=sqrt(k))`: fan-in n, fan-out r | 2/(n + r): k = 1       |

So at one k, XNI's variance is 2n/(n + r) ≈ 2 times GI's: Table 2's two strategies differ, as they
do in the paper. One departure: the official Kaiming branch floors `a` at 0, so its variance stops
growing at k = 2 (Var = 2/n); ttrlab keeps k/n above 2 (the paper never goes there).

`InitStrategy.revision` counts changes of a strategy's distribution for a given (init, k): a run
of a strategy with revision > 0 carries it in its run key, so runs drawn under an earlier
definition are never reused as if they were current (XNI before it followed the official code).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ttrlab.core.registry import Registry


@dataclass(frozen=True)
class InitStrategy:
    name: str
    distribution: str  # "uniform" | "normal"
    variance_at: Callable[[float, int, int], float]  # (k, fan_in n, rank r) -> Var(A), the official formula
    default_variance: Callable[[int, int], float]  # (n, r) -> Var(A) when no k is given (peft's)
    default_k: float | None  # the k whose variance is the default (None: the default is not of the k form)
    revision: int = 0

    def variance(self, fan_in: int, rank: int, scale: float | None) -> float:
        if scale is None:
            return self.default_variance(fan_in, rank)
        return self.variance_at(float(scale), fan_in, rank)

    def fill_(self, weight, scale: float | None, generator) -> float:
        """Fill A (a torch tensor of shape [r, n], on any device) in place from the CPU
        `generator`; return the variance used. The draw happens on the CPU, so A is the same
        on every device."""
        import torch

        rank, fan_in = weight.shape
        variance = self.variance(fan_in, rank, scale)
        draw = torch.empty(weight.shape, dtype=weight.dtype)
        if self.distribution == "uniform":
            bound = math.sqrt(3.0 * variance)
            draw.uniform_(-bound, bound, generator=generator)
        else:
            draw.normal_(0.0, math.sqrt(variance), generator=generator)
        with torch.no_grad():
            weight.copy_(draw)
        return variance


# peft's (and Hu et al.'s) default: kaiming_uniform_(A, a=√5) draws Var(A) = 1/(3n). The one place
# the number is written; everything that means "the default scale" imports it.
KAIMING_DEFAULT_K = 1.0 / 3.0

INIT_STRATEGIES: Registry[InitStrategy] = Registry("init strategy")
for _strategy in (
    # 1 / (n / k) is 1/(3n) to the last bit for every fan-in (k / n is not: it differs in the last
    # bit for about a third of them), so runs keep drawing exactly what they drew before
    InitStrategy("kaiming_uniform", "uniform", lambda k, n, r: k / n, lambda n, r: 1.0 / (n / KAIMING_DEFAULT_K),
                 KAIMING_DEFAULT_K),
    InitStrategy("gaussian", "normal", lambda k, n, r: k / n, lambda n, r: 1.0 / r**2, None),
    InitStrategy("xavier_normal", "normal", lambda k, n, r: 2.0 * k / (n + r), lambda n, r: 2.0 / (n + r), 1.0,
                 revision=1),
):
    INIT_STRATEGIES.register(_strategy.name)(_strategy)
