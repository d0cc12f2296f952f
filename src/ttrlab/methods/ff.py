"""Full fine-tuning: every parameter trains."""
from ttrlab.methods.base import METHODS, Method, PreparedModel, count_parameters


class FullFineTuning(Method):
    name = "ff"
    label = "FF"
    summary = "full fine-tuning: all parameters trained"
    is_full = True

    def prepare(self, model, config):
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        trainable, total = count_parameters(model)
        return PreparedModel(model, trainable, total)

    def preset_learning_rate(self, preset, config):
        return preset.full


METHODS.register("ff")(FullFineTuning())
