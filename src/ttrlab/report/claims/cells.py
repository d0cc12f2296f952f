"""Finding a cell's partners in a database: its clean run (the same cell at rate 0), the run
trained like it without poison, and a cell equal to it but for a few keys — by dictionary look-up,
once per report, not by scanning every cell for every question."""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Iterable

from ttrlab.report.aggregate import Cell
from ttrlab.report.matching import ATTACK_KEYS, is_clean


def _key(kind: str, config: dict[str, Any], ignored: Iterable[str] = ()) -> str:
    skip = set(ignored)
    return json.dumps({"kind": kind, **{k: v for k, v in config.items() if k not in skip}}, sort_keys=True, default=str)


class CellIndex:
    """The cells of one database with the look-ups the claims need."""

    def __init__(self, cells: list[Cell]):
        self.cells = cells
        self.by_id = {cell.id: cell for cell in cells}
        self._exact = {_key(c.kind, c.config): c for c in cells}
        self._clean_any_attack: dict[str, Cell] = {}
        for cell in cells:  # the first clean cell per configuration without its attack keys
            if is_clean(cell.config):
                self._clean_any_attack.setdefault(_key(cell.kind, cell.config, ATTACK_KEYS), cell)
        self._varying: dict[tuple[str, ...], dict[str, list[Cell]]] = {}

    def find(self, kind: str, config: dict[str, Any]) -> Cell | None:
        return self._exact.get(_key(kind, config))

    def clean_counterpart(self, cell: Cell) -> Cell | None:
        """The same cell at rate 0: the same attack (its triggered test set), nothing poisoned."""
        if "rate" not in cell.config or is_clean(cell.config):
            return None
        return self.find(cell.kind, {**cell.config, "rate": 0.0})

    def clean_trained(self, cell: Cell) -> Cell | None:
        """The cell trained like `cell` without poison: itself if clean, its clean counterpart,
        else a clean cell of any attack equal in everything else."""
        if is_clean(cell.config):
            return cell
        return self.clean_counterpart(cell) or self._clean_any_attack.get(_key(cell.kind, cell.config, ATTACK_KEYS))

    def equal_but(self, cell: Cell, keys: tuple[str, ...]) -> list[Cell]:
        """The other cells equal to `cell` in everything but `keys`."""
        if keys not in self._varying:
            groups: dict[str, list[Cell]] = defaultdict(list)
            for other in self.cells:
                groups[_key(other.kind, other.config, keys)].append(other)
            self._varying[keys] = groups
        return [c for c in self._varying[keys].get(_key(cell.kind, cell.config, keys), []) if c is not cell]
