"""Defenses against poisoned training data, for classification runs; each module registers its
defenses in DEFENSES, importing this package imports them all (`ttrlab defenses` lists them).
To add one: a new module here and its import line below."""
from ttrlab.defenses.base import (
    DEFENSES,
    Defense,
    DefenseSettings,
    Outcome,
    auroc,
    build_defense,
    detection_metrics,
    filter_fraction,
    rejecting_metrics,
    top_fraction,
)

from ttrlab.defenses import none, filters  # noqa: E402,F401  (registration)
from ttrlab.defenses import onion, strip  # noqa: E402,F401
from ttrlab.defenses import finetune  # noqa: E402,F401

__all__ = ["DEFENSES", "Defense", "DefenseSettings", "Outcome", "auroc", "build_defense", "detection_metrics",
           "filter_fraction", "rejecting_metrics", "top_fraction"]
