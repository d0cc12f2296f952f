"""Attacks on the training data, for every run kind. Each module registers its attacks in
ATTACKS; importing this package imports them all. To add one: a new module here and its import
line below."""
from ttrlab.attacks.base import (
    ATTACKS,
    BACKDOOR,
    CLEAN,
    FAMILIES,
    UNTARGETED,
    Attack,
    AttackFamily,
    AttackSettings,
    ClassificationAttack,
    PoisonedSplit,
    check_applies,
    poison_count,
    target_label_of,
    task_of,
)

from ttrlab.attacks import none, upa, bpa  # noqa: E402,F401  (registration)
from ttrlab.attacks import clean_label  # noqa: E402,F401
from ttrlab.attacks import instruction  # noqa: E402,F401
from ttrlab.attacks import multi_trigger  # noqa: E402,F401
from ttrlab.attacks import style  # noqa: E402,F401
from ttrlab.attacks import backdoorllm  # noqa: E402,F401

__all__ = ["ATTACKS", "Attack", "AttackFamily", "AttackSettings", "ClassificationAttack", "PoisonedSplit",
           "FAMILIES", "CLEAN", "UNTARGETED", "BACKDOOR", "check_applies", "poison_count", "build_attack",
           "target_label_of", "task_of"]


def build_attack(config) -> ClassificationAttack:
    """The classification attack a config names, with its settings, the target the config means
    (its task's default where it names none) and the task's label count."""
    settings = AttackSettings.of(config)
    settings.target_label = target_label_of(config)
    attack = ATTACKS.get(config.attack)(settings)
    task = task_of(config)
    if task is not None:
        attack.num_labels = task.num_labels
    return attack
