"""Which fine-tuning method a run uses: a config section every run kind composes. The method
decides which of the methods' own settings sections count in the run's identity (FF ignores
LoRA's rank, so full fine-tuning expanded over LoRA ranks is one run)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttrlab.core.settings import Section, require, setting
from ttrlab.methods.base import METHODS


@dataclass
class MethodChoice(Section):
    method: str = setting("lora", "fine-tuning method: ff, lora or another peft method (`ttrlab methods`)")

    def check(self) -> None:
        method = METHODS.get(self.method)
        require(self.TASK_TYPE in method.task_types,
                f"method {self.method!r} does not apply to {self.KIND} runs; allowed: "
                f"{', '.join(n for n in METHODS if self.TASK_TYPE in METHODS.get(n).task_types)}")

    def identity(self, values: dict[str, Any]) -> None:
        own = METHODS.get(self.method).settings
        for section in type(self).sections():
            if section.__dict__.get("METHOD_SETTINGS") and section is not own:
                for name in section.field_names():
                    values.pop(name, None)
