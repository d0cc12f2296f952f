"""What became of one planned run: its result document or its error, when it started and how long it
took. Executors produce outcomes; the driver stores them and the monitor shows them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ttrlab.sweep.spec import PlannedRun


@dataclass
class Outcome:
    run: PlannedRun
    result: dict[str, Any] | None
    error: str | None
    started_at: dt.datetime | None
    seconds: float | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def last_error_line(self) -> str | None:
        """The error's last non-empty line (for a traceback: the exception), None if it ran."""
        if self.error is None:
            return None
        lines = [line.strip() for line in self.error.strip().splitlines() if line.strip()]
        return lines[-1] if lines else "error"
