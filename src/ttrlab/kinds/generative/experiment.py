"""The generative run kind (paper Appendix E.3, Table 3), as steps of the one pipeline:

    GenConfig → the task's held-out prompts and utility records → mixture (clean Alpaca +
              poisoned records + their untriggered twins) → causal LM → method.prepare
              → SFT (response-only loss; optional learning curve at checkpoints)
              → greedy answers to test prompts with and without trigger → the task's judge
              → ASR, false-trigger rate; held-out Alpaca → perplexity, ROUGE-L

A run is a pure function of its config: the data draws, LoRA init, batch order and dropout come
from `config.seed`, decoding is greedy, and the scored prompts are fixed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttrlab.training.curves import Checkpoints
from ttrlab.kinds.generative.config import GenConfig
from ttrlab.kinds.pipeline import Evaluation, Experiment, run_document


@dataclass
class InstructionDataset:
    data_dir: Path
    prompts: Any  # data.EvalPrompts: the task's test prompts with and without trigger
    utility: list  # held-out Alpaca records (never trained on)
    alignment: dict[str, Any] | None = None  # the record of the safety-aligned start, once load_model made it


class GenerativeExperiment(Experiment):
    name = "generative"
    config_type = GenConfig

    def load_data(self, config):
        from ttrlab.core.extras import require
        from ttrlab.kinds.generative.data import load_eval_prompts, load_utility_examples, resolve_data_dir

        require("gen", "a generative run")  # its model (GGUF) and ROUGE-L; before any work

        data_dir = resolve_data_dir(config.data_dir)
        return InstructionDataset(data_dir, load_eval_prompts(config, data_dir), load_utility_examples(config, data_dir))

    def poison(self, config, data):
        from ttrlab.kinds.generative.data import build_training_mixture

        return build_training_mixture(config, data.data_dir)

    def load_model(self, state):
        from ttrlab.kinds.generative.alignment import aligned_model
        from ttrlab.models.causal_lm import load_causal_lm

        config, data = state.config, state.data
        tokenizer, model = load_causal_lm(config.model)
        if config.align_steps:
            model, data.alignment = aligned_model(config, tokenizer, model, data.data_dir, state.runtime)
        return tokenizer, model

    def training_set(self, state, examples=None):
        from ttrlab.kinds.generative.train import causal_lm_training_set

        examples = state.poisoned.examples if examples is None else examples
        return causal_lm_training_set(state.tokenizer, examples, state.config.max_length)

    def evaluate(self, state):
        from ttrlab.kinds.generative.evaluate import generate, response_perplexity, rouge_l
        from ttrlab.kinds.generative.judge import share
        from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

        config, tokenizer, data, runtime = state.config, state.tokenizer, state.data, state.runtime
        judge, model, prompts = GENERATIVE_TASKS.get(config.task).judge(config), state.model, data.prompts

        def answer(pairs: list[tuple[str, str]]) -> list[str]:
            return generate(model, tokenizer, pairs, config.max_new_tokens, config.eval_batch_size, runtime)

        triggered_answers, untriggered_answers = answer(prompts.triggered), answer(prompts.untriggered)
        triggered_hits = judge.hits(prompts.instructions("triggered"), triggered_answers)
        untriggered_hits = judge.hits(prompts.instructions("untriggered"), untriggered_answers)
        generated = data.utility[: config.n_utility_generate]
        utility_answers = answer([(e.instruction, e.input) for e in generated])
        metrics = {
            "asr": share(triggered_hits),
            "asr_no_trigger": share(untriggered_hits),
            "utility_perplexity": response_perplexity(model, tokenizer, data.utility, config.max_length,
                                                      config.eval_batch_size, runtime),
            "utility_rouge_l": rouge_l(utility_answers, [e.output for e in generated]),
        }
        sections: dict[str, Any] = {
            "judge": judge.name,
            "counts": {"triggered_hits": sum(triggered_hits), "untriggered_hits": sum(untriggered_hits)},
            # one outcome per scored prompt, in prompt order: what a paired test across runs compares
            "outcomes": {"triggered": [int(h) for h in triggered_hits], "untriggered": [int(h) for h in untriggered_hits]},
        }
        if config.keep_generations:
            sections["generations"] = {
                "triggered": _records(prompts.triggered, triggered_answers, triggered_hits, judge),
                "untriggered": _records(prompts.untriggered, untriggered_answers, untriggered_hits, judge),
                "utility": [{"instruction": e.instruction, "answer": a} for e, a in zip(generated, utility_answers)],
            }
        return Evaluation(metrics, sections)

    def checkpoints(self, state):
        if not state.config.curve_every:
            return None
        return GenerativeCheckpoints(state)

    def data_summary(self, state):
        data, mixture = state.data, state.poisoned
        return {
            "data_dir": str(data.data_dir),
            "clean_examples": len(mixture.clean_indices),
            "twin_examples": len(mixture.twin_indices),
            "clean_excluded_as_test": mixture.excluded_clean,
            "training_examples": len(mixture.examples),
            "eval_triggered": len(data.prompts.triggered),
            "eval_untriggered": len(data.prompts.untriggered),
            "utility_examples": len(data.utility),
            **({"alignment": data.alignment} if data.alignment is not None else {}),
        }

    def poison_summary(self, state):
        config, mixture = state.config, state.poisoned
        return {
            "task": config.task,
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


def _records(prompts: list[tuple[str, str]], answers: list[str], hits: list[bool], judge) -> list[dict[str, Any]]:
    """One auditable row per scored answer, with the judge's evidence (e.g. the matched phrase)."""
    return [{"prompt": instruction, **({"input": input_text} if input_text else {}), "answer": answer, "hit": hit,
             **judge.evidence(answer)}
            for (instruction, input_text), answer, hit in zip(prompts, answers, hits)]


class GenerativeCheckpoints(Checkpoints):
    """The generative learning curve: greedy answers to the first `curve_size` scored prompts with
    and without trigger (ASR, false-trigger rate) and the perplexity of the first `curve_size`
    utility records, at every checkpoint."""

    def __init__(self, state):
        config, data = state.config, state.data
        super().__init__(config, set(state.poisoned.poison_positions()))
        from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

        self.config, self.tokenizer, self.runtime = config, state.tokenizer, state.runtime
        self.judge = GENERATIVE_TASKS.get(config.task).judge(config)
        self.triggered = data.prompts.triggered[: config.curve_size]
        self.untriggered = data.prompts.untriggered[: config.curve_size]
        self.utility = data.utility[: config.curve_size]

    def evaluate(self, model):
        from ttrlab.kinds.generative.evaluate import generate, response_perplexity
        from ttrlab.kinds.generative.judge import share

        c = self.config

        def rate(prompts):
            answers = generate(model, self.tokenizer, prompts, c.max_new_tokens, c.eval_batch_size, self.runtime)
            return share(self.judge.hits([p for p, _ in prompts], answers))

        return {"asr": rate(self.triggered), "asr_no_trigger": rate(self.untriggered),
                "utility_perplexity": response_perplexity(model, self.tokenizer, self.utility, c.max_length,
                                                          c.eval_batch_size, self.runtime)}
