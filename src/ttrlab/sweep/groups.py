"""Work units: the runs an executor hands to one worker at a time.

Runs whose kind gives them the same non-None `fusion_key` may train together in one process
over one shared base model (`run_group`), so they are scheduled as one unit; every other run is
a unit of its own. `work_units` decides the units, the executors only dispatch them.

Choices made here, and why:

- At most `max_group` runs per unit, split evenly (10 → 5 + 5, 17 → 6 + 6 + 5, never 8 + 2):
  a fused unit takes as long as its largest share of the work, so balanced units finish together.
- Fusable runs are grouped even when there are fewer of them than workers (4 fusable runs on 4
  workers make one unit, and 3 workers idle): fusing shares the base model's memory and
  forward passes, which is what a GPU sweep wants, and the rule stays one line. `--fuse off`
  gives every run its own worker slot.
- Units are dispatched largest first (longest processing time first: a unit of K runs counts as
  K runs' work), ties in spec order, so a big fused unit does not start last and hold up the end
  of the sweep. With `fuse=False` every unit is one run and the order is the spec's.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ttrlab.kinds.registry import RUN_KINDS
from ttrlab.sweep.spec import PlannedRun

MAX_GROUP = 8

Unit = list[PlannedRun]
FusionKey = Callable[[PlannedRun], Any]


def kind_fusion_key(run: PlannedRun) -> tuple[str, str] | None:
    """The run's group identity: (kind, its kind's fusion key), or None to run alone. A kind
    without both `fusion_key` and `run_group` (a plugin kind may define neither) never fuses."""
    kind = RUN_KINDS.get(run.kind)
    fusion_key = getattr(kind, "fusion_key", None)
    if fusion_key is None or getattr(kind, "run_group", None) is None:
        return None
    key = fusion_key(run.config)
    return None if key is None else (run.kind, key)


def work_units(runs: list[PlannedRun], fuse: bool = True, max_group: int = MAX_GROUP,
               key: FusionKey = kind_fusion_key) -> list[Unit]:
    """Partition `runs` into units, in the order the pool should start them (see the module
    docstring). Pure given `key` (by default the runs' kinds' fusion keys); every run is in
    exactly one unit, and runs keep their spec order inside a unit."""
    if max_group < 1:
        raise ValueError(f"max_group must be >= 1, got {max_group}")
    if not fuse:
        return [[run] for run in runs]
    members: dict[Any, list[int]] = {}  # key → positions of its runs, in spec order
    units: list[tuple[int, Unit]] = []  # (position of the unit's first run, unit)
    for position, run in enumerate(runs):
        group = key(run)
        if group is None:
            units.append((position, [run]))
        else:
            members.setdefault(group, []).append(position)
    for positions in members.values():
        for chunk in even_chunks(positions, max_group):
            units.append((chunk[0], [runs[i] for i in chunk]))
    units.sort(key=lambda item: (-len(item[1]), item[0]))
    return [unit for _, unit in units]


def even_chunks(items: list, max_size: int) -> list[list]:
    """`items` cut in order into the fewest chunks of at most `max_size`, sizes differing by at
    most one, larger ones first: 10 by 8 → 5, 5; 17 by 8 → 6, 6, 5."""
    count = -(-len(items) // max_size)
    if count == 0:
        return []
    size, extra = divmod(len(items), count)
    chunks, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def unit_label(unit: Unit) -> str:
    """How the monitor names a unit: the run's label, or "5 runs fused: <first label> …"."""
    if len(unit) == 1:
        return unit[0].label()
    return f"{len(unit)} runs fused: {unit[0].label()} …"
