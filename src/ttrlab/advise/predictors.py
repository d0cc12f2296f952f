"""The predictors `ttrlab advise` ranks configurations by, each computed at θ₀ (or after k probe
steps) on one probe batch by `advise.probe`, and read from its record by name.

A predictor is registered with its provenance (`theory`: a quantity of the paper's Section 3;
`baseline`: what a skeptic would try first) and whether it is fitted on a log scale (positive
quantities spanning orders of magnitude: traces, parameter counts, norms). The direction is not
declared: the calibration fits it on the training configurations, so a predictor the paper reads
one way and the data read the other way is still scored honestly (and its sign is reported).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ttrlab.core.registry import Registry

THEORY, BASELINE = "theory", "baseline"


@dataclass(frozen=True)
class Predictor:
    name: str
    source: str  # THEORY or BASELINE
    summary: str
    read: Callable[[dict], float | None]  # the value from a probe record
    log: bool = False  # fitted on log(value): positive and spread over orders of magnitude

    def value(self, record: dict) -> float | None:
        """The fitted feature: the raw value, or its log; None where undefined."""
        raw = self.read(record)
        if raw is None or not math.isfinite(raw):
            return None
        if self.log:
            return math.log(raw) if raw > 0 else None
        return float(raw)


PREDICTORS: Registry[Predictor] = Registry("predictor")


def register(predictor: Predictor) -> Predictor:
    return PREDICTORS.register(predictor.name)(predictor)


def theory(metric: str) -> Callable[[dict], float | None]:
    return lambda record: record["theory"].get(metric)


def without_head(metric: str) -> Callable[[dict], float | None]:
    """The method's own parameters without the classification head (FF's body, LoRA's adapters):
    at θ₀ the freshly drawn head, identical for FF and LoRA, dominates the 'all' numbers."""
    def read(record: dict) -> float | None:
        theory_metrics = record["theory"]
        return theory_metrics.get(f"{metric}_body_only", theory_metrics.get(f"{metric}_adapters_only"))
    return read


for _p in (
    Predictor("m_prime", THEORY, "M' = ||E K(x, x~)|| over (clean, poisoned) pairs (Eq. 7), all trainable parameters",
              theory("m_prime"), log=True),
    Predictor("m_prime_without_head", THEORY, "M' of the method's own parameters (body or adapters), head left out",
              without_head("m_prime"), log=True),
    Predictor("grad_alignment", THEORY, "|grad L(x_c)^T grad L(x~)| over the pairs (Eq. 16 backdoor, Eq. 17 label flip)",
              theory("grad_inner_abs"), log=True),
    Predictor("grad_cosine", THEORY, "mean cosine of the clean and poisoned loss gradients (Eqs. 16-17, normalised)",
              theory("grad_cosine")),
    Predictor("ntk_trace", THEORY, "trace of the empirical NTK on the clean probe (Eq. 6)", theory("ntk_trace"), log=True),
    Predictor("ntk_trace_without_head", THEORY, "NTK trace of the method's own parameters, head left out",
              without_head("ntk_trace"), log=True),
    Predictor("fisher_trace", THEORY, "trace of the empirical Fisher on the probe poisoned at the rate (Eq. 8)",
              theory("fisher_trace"), log=True),
    Predictor("information_bits", THEORY, "IB = 1/2 log pdet of that Fisher (Eq. 9, the definition)",
              theory("fisher_ib_logdet")),
    Predictor("information_bits_without_head", THEORY, "IB of the method's own parameters, head left out",
              without_head("fisher_ib_logdet")),
    Predictor("renyi_entropy", THEORY, "normalised Renyi entropy H_1 of the Fisher spectrum (Eq. 10)",
              theory("fisher_renyi_1_normalized")),
    Predictor("trainable_parameters", BASELINE, "number of trainable parameters",
              lambda r: r["baseline"]["trainable_parameters"], log=True),
    Predictor("update_norm", BASELINE, "||theta_k - theta_0|| after k full-batch AdamW steps on the poisoned probe",
              lambda r: r["baseline"]["update_norm"], log=True),
    Predictor("poison_loss", BASELINE, "mean loss of the poisoned twins after those k steps (low: poison learned)",
              lambda r: r["baseline"]["poison_loss"]),
    Predictor("poison_loss_drop", BASELINE, "how much those k steps lowered the poisoned twins' loss",
              lambda r: r["baseline"]["poison_loss_drop"]),
    Predictor("rate", BASELINE, "the attack's poisoning rate (constant within one candidate set; pooled, it is "
              "the first thing that explains harm)", lambda r: r["config"]["rate"]),
):
    register(_p)

# The combined model: the theory's quantities together (ridge), against the baselines alone.
COMBINED_THEORY = tuple(n for n in PREDICTORS.registered() if PREDICTORS.get(n).source == THEORY)
