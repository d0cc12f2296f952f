"""The theory run kind: the paper's NTK and information-geometry quantities on a real model, as
steps of the one pipeline (no optimize step: the paper's analysis is at initialisation θ₀).

    TheoryConfig → load task → sample N examples → attack (pairs + poisoned sample)
                 → classifier → method.prepare (θ₀, dropout off)
                 → empirical NTK over the method's trainable parameters
                 → NTK traces, M′ (Eq. 7), |∇Lᵀ∇L| (Eqs. 16–17), Fisher spectrum (Eq. 8),
                   IB (Eq. 9), H_α (Eq. 10)

Samples (all drawn from `seed`, `ttrlab.core.streams`):
* clean: N examples of the (train_size subset of the) training split;
* pairs for M′ and Eqs. 16–17: each clean example and its poisoned version (the attack applied
  to every one of the N: UPA flips the label, the input is unchanged; BPA inserts the trigger and
  sets the target label). M′ only sees inputs, so for UPA it equals ‖E K(x, x)‖: Eq. 7 cannot see
  a label flip (the paper says as much in Section 2.4); Eq. 17's gradient product can.
* Fisher sample: the N clean examples poisoned by the attack at the config's rate (a sample of the
  poisoned training set D̃).
The NTK is computed once over the distinct inputs of all three.

`quantity: spectrum` needs neither data nor a model: Theorem 3.4 and H′_α (Eq. 18) of LoRA's A
at one (rank, init, scale), one point of the Figure 3 map.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ttrlab.core.errors import UserError
from ttrlab.core.result import RunResult, versions
from ttrlab.core.streams import rng_for
from ttrlab.kinds.pipeline import Evaluation, Experiment, run_document
from ttrlab.kinds.theory.config import TheoryConfig

# ---- samples ---------------------------------------------------------------------------------
@dataclass
class TheorySamples:
    clean: list  # N Examples
    paired: list  # their poisoned versions (attack at rate 1), same order
    fisher: list  # the N clean examples poisoned at the config's rate
    fisher_poisoned: int


def draw_samples(config: TheoryConfig, train_examples: list) -> TheorySamples:
    from ttrlab.attacks import build_attack

    if len(train_examples) < config.n:
        raise UserError(f"n {config.n} is larger than the {len(train_examples)} training examples available")
    chosen = sorted(rng_for(config.seed, "theory_sample").choice(len(train_examples), size=config.n, replace=False).tolist())
    clean = [train_examples[i] for i in chosen]
    every = build_attack(config.replace(rate=1.0)).poison(clean, rng_for(config.seed, "theory_pairs"))
    at_rate = build_attack(config).poison(clean, rng_for(config.seed, "theory_fisher"))
    return TheorySamples(clean, list(every.examples), list(at_rate.examples), at_rate.count)


# ---- the kind ---------------------------------------------------------------------------------
class TheoryExperiment(Experiment):
    name = "theory"
    config_type = TheoryConfig

    def compute_without_model(self, config):
        return compute_spectrum(config)

    def load_data(self, config):
        from ttrlab.kinds.classification.experiment import load_run_data

        return load_run_data(config)

    def poison(self, config, data):
        return draw_samples(config, data.train)

    def load_model(self, state):
        from ttrlab.models.loading import load_classifier

        return load_classifier(state.config.model, state.data.task.num_labels, state.config.seed)

    def evaluate(self, state):
        return evaluate_theory(state)

    def data_summary(self, state):
        return {"train_examples": len(state.data.train), "samples": state.config.n}

    def poison_summary(self, state):
        config, samples = state.config, state.poisoned
        return {"attack": config.attack, "rate": config.rate, "pairs": config.n,
                "fisher_poisoned": samples.fisher_poisoned}


THEORY = TheoryExperiment()


def compute_theory(config: TheoryConfig, progress=None, data=None) -> dict[str, Any]:
    """Run one theory config; returns the result document (see docs/theory.md)."""
    return run_document(THEORY, config, progress=progress, data=data)


def evaluate_theory(state) -> Evaluation:
    """Every quantity of `config.quantity` from one empirical NTK over the distinct inputs, for
    the run's `pipeline.RunState` (its model prepared, untrained; its samples `draw_samples`')."""
    from ttrlab.attacks import ATTACKS
    from ttrlab.theory.fisher import fisher_eigenvalues
    from ttrlab.theory.information import summarize_spectrum
    from ttrlab.theory.measures import gradient_alignment, kernel_summary, m_prime
    from ttrlab.theory.ntk import empirical_ntk
    from ttrlab.training.loop import collate

    config, prepared, tokenizer, runtime = state.config, state.prepared, state.tokenizer, state.runtime
    samples: TheorySamples = state.poisoned
    prepared.model.eval()  # dropout off for every theory quantity
    wanted = []
    if config.quantity in ("all", "ntk"):
        wanted += samples.clean + samples.paired
    if config.quantity in ("all", "fisher"):
        wanted += samples.fisher
    index: dict[tuple, int] = {}
    inputs = []
    for example in wanted:
        if example.texts not in index:
            index[example.texts] = len(inputs)
            inputs.append(example)
    batch = runtime.to_device(collate(tokenizer, inputs, config.max_length))
    with runtime.autocast():
        ntk = empirical_ntk(prepared.model, batch, max_jacobian_bytes=config.max_jacobian_mb * 2**20)
    group_kernels = {"all": ntk.kernel, **ntk.groups}
    if "adapters" in ntk.groups and "head" in ntk.groups:
        group_kernels["adapters_only"] = group_kernels.pop("adapters")
    if "body" in ntk.groups and "head" in ntk.groups:
        group_kernels["body_only"] = group_kernels.pop("body")
    prepared.details["parameter_groups"] = ntk.parameters

    sections: dict[str, Any] = {"compute": {
        "distinct_inputs": len(inputs),
        "outputs": int(ntk.logits.shape[1]),
        "chunks": ntk.chunks,
        "seconds": round(ntk.seconds, 3),
        "peak_rss_increase_bytes": ntk.peak_rss_increase_bytes,
        "jacobian_chunk_bytes": ntk.jacobian_chunk_bytes,
        **ntk.details,
    }}
    metrics: dict[str, float] = {}

    def positions(examples):
        return [index[e.texts] for e in examples]

    if config.quantity in ("all", "ntk"):
        clean, paired = positions(samples.clean), positions(samples.paired)
        clean_kernels = {g: k[clean][:, :, clean] for g, k in group_kernels.items()}
        labels_left = torch.tensor([e.label for e in samples.clean], device=ntk.logits.device)
        labels_right = torch.tensor([e.label for e in samples.paired], device=ntk.logits.device)
        # a kernel over the 2N (clean, poisoned) rows, with each row's own label
        rows = clean + paired
        pair_kernel = ntk.kernel[rows][:, :, rows]
        left, right = list(range(config.n)), list(range(config.n, 2 * config.n))
        sections["ntk"] = {"n": config.n, "groups": {g: kernel_summary(k) for g, k in clean_kernels.items()}}
        if config.keep_kernels:
            sections["ntk"]["kernel"] = clean_kernels["all"].reshape(config.n * ntk.logits.shape[1], -1).tolist()
        sections["m_prime"] = {
            "attack": config.attack,
            "pairs": config.n,
            "identical_inputs": sum(a == b for a, b in zip(clean, paired)),
            "groups": {g: m_prime(k[rows][:, :, rows], left, right) for g, k in group_kernels.items()},
        }
        sections["gradient_alignment"] = {
            "equation": ALIGNMENT_EQUATION.get(ATTACKS.get(config.attack).family.name),
            **gradient_alignment(pair_kernel, ntk.logits[rows], torch.cat([labels_left, labels_right]), left, right),
        }
        summary = sections["ntk"]["groups"]["all"]
        metrics.update({
            "ntk_trace": summary["trace"],
            "ntk_mean_diagonal": summary["mean_diagonal"],
            "ntk_lambda_max": summary["lambda_max"],
            "m_prime": sections["m_prime"]["groups"]["all"]["frobenius"],
            "grad_inner_abs": sections["gradient_alignment"]["mean_abs_inner_product"],
            "grad_cosine": sections["gradient_alignment"]["mean_cosine"],
        })
        for g in group_kernels:
            if g != "all":
                metrics[f"ntk_trace_{g}"] = sections["ntk"]["groups"][g]["trace"]
                metrics[f"m_prime_{g}"] = sections["m_prime"]["groups"][g]["frobenius"]

    if config.quantity in ("all", "fisher"):
        rows = positions(samples.fisher)
        labels = torch.tensor([e.label for e in samples.fisher], device=ntk.logits.device)
        fisher: dict[str, Any] = {"n": config.n, "poisoned_in_sample": samples.fisher_poisoned, "groups": {}}
        for g, k in group_kernels.items():
            eigenvalues = fisher_eigenvalues(k[rows][:, :, rows], ntk.logits[rows], labels)
            fisher["groups"][g] = {
                "eigenvalues": [float(x) for x in eigenvalues],
                **summarize_spectrum(eigenvalues, relative_eps=config.relative_eps),
            }
        sections["fisher"] = fisher
        for key, value in fisher["groups"]["all"].items():
            if key != "eigenvalues":
                metrics[f"fisher_{key}"] = value
        for g in group_kernels:
            if g != "all":
                metrics[f"fisher_ib_logdet_{g}"] = fisher["groups"][g]["ib_logdet"]
                metrics[f"fisher_trace_{g}"] = fisher["groups"][g]["trace"]
    return Evaluation({k: float(v) for k, v in metrics.items()}, sections)


# Eq. 16 is the backdoor's gradient product, Eq. 17 the label flip's (Appendix A).
ALIGNMENT_EQUATION = {"backdoor": 16, "untargeted": 17}


def model_fan_in(model_name: str) -> int:
    """Hidden size of a model (the fan-in of LoRA's A on query/value), read from its config."""
    from transformers import AutoConfig

    from ttrlab.models.config import resolve_model

    source, is_local = resolve_model(model_name)
    try:
        return int(AutoConfig.from_pretrained(source, local_files_only=is_local).hidden_size)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the config of model {model_name!r}: {str(error).splitlines()[0]}") from None


def compute_spectrum(config: TheoryConfig) -> RunResult:
    """Theorem 3.4 check and H′_α (Eq. 18) for the LoRA init of `config` (no model, no data):
    one point of the Figure 3 map, so a sweep over rank × init_scale rebuilds the figure."""
    from ttrlab.methods import METHODS
    from ttrlab.theory.information import ALPHAS, alpha_label
    from ttrlab.theory.spectrum import ata_eigenvalues, draw_a, h_prime, theorem_3_4_check

    fan_in = config.fan_in or model_fan_in(config.model)
    check = theorem_3_4_check(config.init, config.rank, fan_in, config.init_scale, config.seed,
                              lora_scaling=METHODS.get(config.method).lora_scaling(config))
    eigenvalues = ata_eigenvalues(draw_a(config.init, config.rank, fan_in, config.init_scale, config.seed)[0])
    metrics: dict[str, float] = {
        "scale_k": check["scale_k"],
        "ata_max": check["nonzero_eigenvalues"]["max"],
        "ata_min": check["nonzero_eigenvalues"]["min"],
        "ata_mean": check["nonzero_eigenvalues"]["mean"],
        "m_delta_max": check["m_delta"]["max_eigenvalue"],
        "m_delta_nsd": float(check["m_delta"]["negative_semidefinite"]),
        "m_delta_nsd_with_lora_scaling": float(check["with_lora_scaling"]["negative_semidefinite"]),
        "mp_share_inside": check["marchenko_pastur"]["share_inside_5pct"],
    }
    for alpha in ALPHAS:
        metrics[f"h_prime_{alpha_label(alpha)}_normalized"] = h_prime(eigenvalues, alpha, True)
        metrics[f"h_prime_{alpha_label(alpha)}_literal"] = h_prime(eigenvalues, alpha, False)
    return RunResult(
        kind="theory", run_key=config.run_key(), config={**config.resolved(), "fan_in": fan_in}, versions=versions(),
        runtime=None, data={}, poison={}, method={"name": config.method, "init": config.init, "rank": config.rank},
        metrics=metrics, sections={"theorem_3_4": check},
    )
