"""Generative (causal-LM) jailbreak backdoors, paper Appendix E.3 / Table 3.

Public API: `GenConfig` (one run's settings) and `run_generative(config) -> result document`.
The pieces: `models` (the offline `smollm2` alias), `template` (one prompt format for training
and evaluation), `data` (Alpaca + BackdoorLLM mixture, evaluation prompts), `train` (SFT with
response-only loss), `judge` (refusal judges), `evaluate` (greedy generation, perplexity,
ROUGE-L), `experiment` (the "generative" run kind: the pipeline's steps), `commands`
(`ttrlab gen-train`). The attacks are BackdoorLLM's (`ttrlab.attacks.backdoorllm`).
"""
from ttrlab.kinds.generative.config import GenConfig


def run_generative(config, progress=None, batch_hook=None, keep_model=False):
    """Run one generative backdoor run; see ttrlab.kinds.generative.experiment.run_generative."""
    from ttrlab.kinds.generative.experiment import run_generative as _run

    return _run(config, progress=progress, batch_hook=batch_hook, keep_model=keep_model)


__all__ = ["GenConfig", "run_generative"]
