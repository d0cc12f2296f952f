"""The sequential design under which seeds are added until a claim is decided: looks at a declared
schedule of seed counts, α spent over them, so that peeking never inflates the error rate.

A claim is analysed only at its *looks*: the first L seeds of its units (by seed order) for each
scheduled L ≤ the seeds it holds — a seed beyond the last complete look waits for the next one.
Look j gets the share w_j of α given by a Lan–DeMets spending function A(t) at information
fraction t_j = L_j / L_max:

    w_j = (A(t_j) − A(t_{j−1})) / α,  Σ w_j = 1,

- `pocock`: A(t) = α · ln(1 + (e − 1)·t) (spends early: a claim can be decided at the first look);
- `obrien_fleming`: A(t) = 2 − 2Φ(z_{1−α/2} / √t) (spends late: almost nothing at 3 seeds).

A claim's p-value is p_seq = min(1, p_j / w_j) at its latest look j. By the union (Bonferroni)
bound over the looks, P(p_seq ≤ a at any look) ≤ Σ_j w_j·a = a under the null for *any*
stopping rule and any valid per-look test, whatever the correlation between looks. This is more
conservative than exact group-sequential boundaries (which assume jointly normal statistics that
a t-test on 3–20 seeds does not give) and exact with the sign-flip test too.
`tests/test_claims_sequential.py` checks the error rate by simulation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

SPENDING = ("pocock", "obrien_fleming")


@dataclass(frozen=True)
class SequentialDesign:
    looks: tuple[int, ...]  # seed counts, increasing
    spending: str = "pocock"
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not self.looks or list(self.looks) != sorted(set(self.looks)) or self.looks[0] < 2:
            raise ValueError(f"looks {list(self.looks)} must be increasing seed counts, the first at least 2")
        if self.spending not in SPENDING:
            raise ValueError(f"spending {self.spending!r} is not one of {', '.join(SPENDING)}")

    @property
    def max_seeds(self) -> int:
        return self.looks[-1]

    def spent(self, t: float) -> float:
        """A(t): the α spent up to information fraction t."""
        if t <= 0:
            return 0.0
        if self.spending == "pocock":
            return self.alpha * math.log(1 + (math.e - 1) * min(t, 1.0))
        z = float(sps.norm.ppf(1 - self.alpha / 2))
        return float(2 - 2 * sps.norm.cdf(z / math.sqrt(min(t, 1.0))))

    def weights(self) -> tuple[float, ...]:
        """w_j per look (they sum to 1)."""
        fractions = [look / self.max_seeds for look in self.looks]
        cumulative = [self.spent(t) / self.alpha for t in fractions]
        return tuple(c - p for c, p in zip(cumulative, [0.0, *cumulative[:-1]]))

    def look_at(self, seeds: int) -> int | None:
        """The index of the latest look that `seeds` seeds complete, or None before the first."""
        done = [j for j, look in enumerate(self.looks) if look <= seeds]
        return done[-1] if done else None

    def adjust(self, p: float, look: int) -> float:
        """p_seq = min(1, p / w_look)."""
        if math.isnan(p):
            return p
        return min(1.0, p / self.weights()[look])

    def level(self, look: int) -> float:
        """The nominal level a look's own p must beat: α · w_look."""
        return self.alpha * self.weights()[look]

    def describe(self) -> str:
        shares = ", ".join(f"{look} ({100 * w:.0f}%)" for look, w in zip(self.looks, self.weights()))
        return f"looks at {shares} seeds ({self.spending} α-spending, union bound)"
