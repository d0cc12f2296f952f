"""`load_claims`: a claims file read (`declared`) and its registered names checked — every
design, manipulation check and metric a claim names must be one ttrlab knows."""
from __future__ import annotations

from pathlib import Path

from ttrlab.core.errors import UserError
from ttrlab.evaluation import METRICS
from ttrlab.report.claims.checks import CHECKS
from ttrlab.report.claims.declared import ClaimsFile, read_claims
from ttrlab.report.claims.designs import DESIGNS


def load_claims(path: str | Path | None = None) -> ClaimsFile:
    """The claims file at `path` (default: the paper's, shipped with ttrlab), checked."""
    claims = read_claims(path)
    for claim in claims.claims:
        try:
            DESIGNS.get(claim.design)
            for name in claim.checks:
                CHECKS.get(name)
        except UserError as error:
            raise UserError(f"claims file {claims.source!r}: claim {claim.id!r}: {error}") from None
        if claim.metric:
            METRICS.info(claim.metric)
    return claims
