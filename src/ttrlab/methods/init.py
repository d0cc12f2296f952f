"""Initialisation strategies for LoRA's A matrix, with an explicit variance scale.

Every strategy draws A ∈ R^{r×n} (n = fan-in) with mean 0 and Var(A) = k / n, B = 0. `k` is
the paper's "variance scale" (Section 4.4.2): peft's default Kaiming-uniform has k = 1/3. When
no scale is given, each strategy keeps its own textbook variance, expressed here as k:

| strategy        | shape                   | default Var(A)        | default k          |
|-----------------|-------------------------|-----------------------|--------------------|
| kaiming_uniform | U(-b, b), b = sqrt(3k/n) | 1/(3n)  (peft, Hu et al.) | 1/3            |
| gaussian        | N(0, k/n)               | 1/r²    (peft "gaussian") | n/r²           |
| xavier_normal   | N(0, k/n)               | 2/(n + r) (Glorot)     | 2n/(n + r)         |

With a scale given, gaussian and xavier_normal draw from the same distribution; the name then
only records which paper row (Table 2: GI vs XNI) the run reproduces.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ttrlab.registry import Registry


@dataclass(frozen=True)
class InitStrategy:
    name: str
    distribution: str  # "uniform" | "normal"
    default_scale: Callable[[int, int], float]  # (fan_in n, rank r) -> k

    def scale(self, fan_in: int, rank: int, scale: float | None) -> float:
        return self.default_scale(fan_in, rank) if scale is None else float(scale)

    def fill_(self, weight, scale: float | None, generator) -> float:
        """Fill A (a torch tensor of shape [r, n], on any device) in place from the CPU
        `generator`; return the variance used. The draw happens on the CPU, so A is the same
        on every device."""
        import torch

        rank, fan_in = weight.shape
        variance = self.scale(fan_in, rank, scale) / fan_in
        draw = torch.empty(weight.shape, dtype=weight.dtype)
        if self.distribution == "uniform":
            bound = math.sqrt(3.0 * variance)
            draw.uniform_(-bound, bound, generator=generator)
        else:
            draw.normal_(0.0, math.sqrt(variance), generator=generator)
        with torch.no_grad():
            weight.copy_(draw)
        return variance


INIT_STRATEGIES: Registry[InitStrategy] = Registry("init strategy")
for _strategy in (
    InitStrategy("kaiming_uniform", "uniform", lambda n, r: 1.0 / 3.0),
    InitStrategy("gaussian", "normal", lambda n, r: n / r**2),
    InitStrategy("xavier_normal", "normal", lambda n, r: 2.0 * n / (n + r)),
):
    INIT_STRATEGIES.register(_strategy.name)(_strategy)
