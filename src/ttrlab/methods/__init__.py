"""Fine-tuning methods and LoRA init strategies, each registered by name: ff, lora and its peft
variants (lora_fa, rslora, dora, pissa, olora), adalora, ia3, prompt_tuning."""
from ttrlab.methods.base import METHODS, RUN_KINDS, TASK_TYPES, Method, PreparedModel, count_parameters, full_method
from ttrlab.methods.init import INIT_STRATEGIES, KAIMING_DEFAULT_K, InitStrategy

from ttrlab.methods import ff, lora  # noqa: E402,F401  (registration)
from ttrlab.methods import lora_fa, rslora, dora, pissa, olora  # noqa: E402,F401
from ttrlab.methods import adalora, ia3, prompt_tuning  # noqa: E402,F401


def method_settings() -> tuple[type, ...]:
    """Every registered method's settings section, once each, in registration order: the run
    configs inherit them all, so a method's knobs are spec keys and CLI flags of every kind."""
    seen: list[type] = []
    for name in METHODS.registered():
        settings = METHODS.get(name).settings
        if settings is not None and settings not in seen:
            seen.append(settings)
    return tuple(seen)


__all__ = ["METHODS", "RUN_KINDS", "TASK_TYPES", "Method", "PreparedModel", "count_parameters", "full_method",
           "INIT_STRATEGIES", "InitStrategy", "KAIMING_DEFAULT_K", "method_settings"]
