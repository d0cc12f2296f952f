"""(IA)³ (Liu et al. 2022) through peft's IA3Config: learned vectors that rescale the keys, values
and the feed-forward activations; target and feed-forward modules are peft's defaults for the
architecture (BERT: key, value, output.dense; LLaMA: k_proj, v_proj, down_proj). The vectors
start at 1 (the model is unchanged at step 0); the head trains fully."""
from ttrlab.methods.base import METHODS, Method, PreparedModel, count_parameters
from ttrlab.methods.lora import peft_task_type, wrap


class InfusedAdapter(Method):
    name = "ia3"
    label = "IA3"
    summary = "(IA)3 (peft): learned rescaling vectors on keys, values and feed-forward, head trained fully"

    def prepare(self, model, config):
        from peft import IA3Config

        peft_model = wrap(model, IA3Config(task_type=peft_task_type(config.TASK_TYPE), target_modules=None,
                                           feedforward_modules=None), config.seed, "ia3")
        adapted = peft_model.peft_config["default"]
        trainable, total = count_parameters(peft_model)
        return PreparedModel(peft_model, trainable, total, {
            "target_modules": sorted(adapted.target_modules), "feedforward_modules": sorted(adapted.feedforward_modules),
            "ia3_vectors": sum(1 for n, _ in peft_model.named_parameters() if ".ia3_l." in n)})

    def preset_learning_rate(self, preset, config):
        # The presets have no (IA)³ rate; its paper trains at 3e-3, above LoRA's usual rates, so
        # the adapter rate of the preset (the larger of a preset's rates) is the nearest rule.
        return preset.adapter_low_rank


METHODS.register("ia3")(InfusedAdapter())
