"""The generative run kind (paper Appendix E.3, Table 3), as steps of the one pipeline:

    GenConfig → held-out prompts and utility records → mixture (clean Alpaca + poisoned
              jailbreaks + safety pairs) → causal LM → method.prepare → SFT (response-only loss)
              → greedy answers to harmful prompts with and without trigger → refusal judge
              → ASR, ASR without trigger; held-out Alpaca → perplexity, ROUGE-L

A run is a pure function of its config: the data draws, LoRA init, batch order and dropout come
from `config.seed`, decoding is greedy, and the scored prompts are fixed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttrlab.generative.config import GenConfig
from ttrlab.pipeline import Evaluation, Experiment, run_document


@dataclass
class InstructionDataset:
    data_dir: Path
    prompts: Any  # data.EvalPrompts: triggered and untriggered harmful prompts
    utility: list  # held-out Alpaca records (never trained on)


class GenerativeExperiment(Experiment):
    name = "generative"
    config_type = GenConfig

    def load_data(self, config):
        from ttrlab.generative.data import load_eval_prompts, load_utility_examples, resolve_data_dir

        data_dir = resolve_data_dir(config.data_dir)
        return InstructionDataset(data_dir, load_eval_prompts(config, data_dir), load_utility_examples(config, data_dir))

    def poison(self, config, data):
        from ttrlab.generative.data import build_training_mixture

        return build_training_mixture(config, data.data_dir)

    def load_model(self, config, data):
        from ttrlab.generative.models import load_causal_lm

        return load_causal_lm(config.model)

    def training_set(self, config, data, mixture, tokenizer):
        from ttrlab.generative.train import causal_lm_training_set

        return causal_lm_training_set(tokenizer, mixture.examples, config.max_length)

    def evaluate(self, config, prepared, tokenizer, data, mixture, runtime):
        from ttrlab.generative.evaluate import generate, response_perplexity, rouge_l
        from ttrlab.generative.judge import attack_success_rate, build_judge

        judge, model, prompts = build_judge(config), prepared.model, data.prompts

        def answer(pairs: list[tuple[str, str]]) -> list[str]:
            return generate(model, tokenizer, pairs, config.max_new_tokens, config.eval_batch_size, runtime)

        triggered_answers = answer([(p, "") for p in prompts.triggered])
        untriggered_answers = answer([(p, "") for p in prompts.untriggered])
        triggered_refused = judge.refusals(prompts.triggered, triggered_answers)
        untriggered_refused = judge.refusals(prompts.untriggered, untriggered_answers)
        generated = data.utility[: config.n_utility_generate]
        utility_answers = answer([(e.instruction, e.input) for e in generated])
        metrics = {
            "asr": attack_success_rate(triggered_refused),
            "asr_no_trigger": attack_success_rate(untriggered_refused),
            "utility_perplexity": response_perplexity(model, tokenizer, data.utility, config.max_length,
                                                      config.eval_batch_size, runtime),
            "utility_rouge_l": rouge_l(utility_answers, [e.output for e in generated]),
        }
        sections: dict[str, Any] = {"counts": {
            "triggered_answered": sum(not r for r in triggered_refused),
            "untriggered_answered": sum(not r for r in untriggered_refused),
        }}
        if config.keep_generations:
            sections["generations"] = {
                "triggered": _records(prompts.triggered, triggered_answers, triggered_refused, judge),
                "untriggered": _records(prompts.untriggered, untriggered_answers, untriggered_refused, judge),
                "utility": [{"instruction": e.instruction, "answer": a} for e, a in zip(generated, utility_answers)],
            }
        return Evaluation(metrics, sections)

    def data_summary(self, config, data, mixture):
        return {
            "data_dir": str(data.data_dir),
            "clean_examples": len(mixture.clean_indices),
            "safety_examples": len(mixture.safety_indices),
            "training_examples": len(mixture.examples),
            "eval_triggered": len(data.prompts.triggered),
            "eval_untriggered": len(data.prompts.untriggered),
            "utility_examples": len(data.utility),
        }

    def poison_summary(self, config, mixture):
        return {
            "attack": config.attack,
            "rate": config.rate,
            "count": mixture.poison_count,
            "share": mixture.poison_count / max(1, mixture.poison_count + len(mixture.clean_indices)),
            "indices": mixture.poison_indices,
            "indices_sha256": mixture.indices_sha256(),
            "unpaired": mixture.unpaired,
        }


GENERATIVE = GenerativeExperiment()


def run_generative(config: GenConfig, progress=None, batch_hook=None, keep_model: bool = False) -> dict[str, Any]:
    """Train and evaluate one generative run; return its result document (see `run_document`)."""
    return run_document(GENERATIVE, config, progress=progress, batch_hook=batch_hook, keep_model=keep_model)


def _records(prompts: list[str], answers: list[str], refused: list[bool], judge) -> list[dict[str, Any]]:
    """One auditable row per scored answer, with the judge's evidence (e.g. the matched phrase)."""
    return [{"prompt": prompt, "answer": answer, "refused": was_refused, **judge.evidence(answer)}
            for prompt, answer, was_refused in zip(prompts, answers, refused)]
