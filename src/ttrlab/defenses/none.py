"""No defense: the run is the undefended one (its key and result are those of a run without
the setting)."""
from ttrlab.defenses.base import DEFENSES, Defense


@DEFENSES.register("none")
class NoDefense(Defense):
    name = "none"
    summary = "no defense"
    kind = "none"
    changes_run = False
