"""Threat models: where the poison enters a run (`ttrlab threats`). Each module registers its
threat in THREATS; importing this package imports them all. To add one: a new module here and
its import line below."""
from ttrlab.threats.base import DEFAULT_THREAT, THREATS, Threat, ThreatSettings, threat_of

from ttrlab.threats import fine_tune_poison, poisoned_base  # noqa: E402,F401  (registration)

__all__ = ["DEFAULT_THREAT", "THREATS", "Threat", "ThreatSettings", "threat_of"]
