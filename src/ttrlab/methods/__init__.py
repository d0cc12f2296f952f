"""Fine-tuning methods (ff, lora) and LoRA init strategies, each registered by name."""
from ttrlab.methods.base import METHODS, TASK_TYPES, Method, PreparedModel, count_parameters, full_method
from ttrlab.methods.init import INIT_STRATEGIES, InitStrategy

from ttrlab.methods import ff, lora  # noqa: E402,F401  (registration)


def method_settings() -> tuple[type, ...]:
    """Every registered method's settings section, once each, in registration order: the run
    configs inherit them all, so a method's knobs are spec keys and CLI flags of every kind."""
    seen: list[type] = []
    for name in METHODS.registered():
        settings = METHODS.get(name).settings
        if settings is not None and settings not in seen:
            seen.append(settings)
    return tuple(seen)


__all__ = ["METHODS", "TASK_TYPES", "Method", "PreparedModel", "count_parameters", "full_method",
           "INIT_STRATEGIES", "InitStrategy", "method_settings"]
