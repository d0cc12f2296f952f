"""Prompt tuning (Lester et al. 2021) through peft's PromptTuningConfig: `prompt_tokens` trained
embeddings are prepended to every input; the model itself stays frozen (a classifier's head
trains fully). The prompt starts as the embeddings of tokens drawn uniformly from the vocabulary
with the run's seed (the paper's "sampled vocabulary" init, which trains better than peft's
N(0, 1) RANDOM init at the embeddings' own scale).

Not for theory runs: the NTK engines differentiate the model on the tokenized batch, whose
attention mask and positions the prepended prompt lengthens (`kinds`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ttrlab.methods.base import METHODS, Method, PreparedModel, count_parameters
from ttrlab.methods.lora import peft_task_type, wrap
from ttrlab.core.settings import Section, require, setting

PROMPT_INIT_SEED_OFFSET = 3_571


@dataclass
class PromptTuningSettings(Section):
    """Prompt tuning's knobs (ignored by runs of other methods, and not part of their identity)."""

    METHOD_SETTINGS = True

    prompt_tokens: int = setting(20, "prompt tuning: trained virtual tokens prepended to each input")

    def check(self) -> None:
        require(1 <= self.prompt_tokens <= 1024, f"prompt_tokens {self.prompt_tokens} must be in [1, 1024]")

    def check_model(self, model_config) -> None:
        from ttrlab.models.config import positions_of

        if METHODS.get(self.method).settings is not PromptTuningSettings:
            return
        positions = positions_of(model_config)
        require(positions is None or self.max_length + self.prompt_tokens <= positions,
                f"max_length {self.max_length} + prompt_tokens {self.prompt_tokens} exceeds the {positions} positions "
                f"of model {self.model!r}; allowed: a sum up to {positions}")


class PromptTuning(Method):
    name = "prompt_tuning"
    label = "Prompt"
    summary = "prompt tuning (peft): trained virtual-token embeddings prepended to the input, model frozen"
    settings = PromptTuningSettings
    kinds = ("train", "generative")

    def prepare(self, model, config):
        import torch
        from peft import PromptTuningConfig

        settings = PromptTuningSettings.of(config)
        peft_model = wrap(model, PromptTuningConfig(task_type=peft_task_type(config.TASK_TYPE),
                                                    num_virtual_tokens=settings.prompt_tokens), config.seed,
                          f"prompt_tokens {settings.prompt_tokens}")
        vocabulary = peft_model.word_embeddings.weight
        generator = torch.Generator().manual_seed(config.seed + PROMPT_INIT_SEED_OFFSET)
        tokens = torch.randint(0, vocabulary.shape[0], (settings.prompt_tokens,), generator=generator)
        prompt = peft_model.prompt_encoder["default"].embedding.weight
        with torch.no_grad():
            prompt.copy_(vocabulary.detach()[tokens.to(vocabulary.device)])
        trainable, total = count_parameters(peft_model)
        return PreparedModel(peft_model, trainable, total, {"init": "sampled_vocabulary",
                                                            "prompt_tokens": settings.prompt_tokens})

    def preset_learning_rate(self, preset, config):
        # Prompt tuning's papers train at far higher rates (Lester et al.: 0.3 with Adafactor);
        # the presets have none, so the adapter rate (the larger) applies: set --lr to go higher.
        return preset.adapter_low_rank

    def settings_label(self, values) -> str:
        return f"p={values.get('prompt_tokens')}"

    def describe(self, values) -> str:
        return f"Prompt tuning, {values.get('prompt_tokens')} tokens"


METHODS.register("prompt_tuning")(PromptTuning())
