"""The claims file, read and checked for its own structure: what is declared before the runs
(`paper_claims.yaml`, or a user's own file of the same layout), with the file's sha256 so a report
names exactly which declaration its verdicts rest on. Names that registries own (designs, checks,
metrics) are checked where the registries are known (`claims.load`)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ttrlab.core.errors import UserError, shown
from ttrlab.report.claims.sequential import SequentialDesign

ROLES = ("primary", "secondary", "described")
EXPECT = ("lower", "higher", "none")
BASELINES = ("full", "clean")  # or a {key: value} mapping
CORRECTIONS = ("holm", "benjamini_hochberg")
DEFAULT_FILE = "report/claims/paper_claims.yaml"
# claims files shipped with ttrlab, named without their path: `--claims official`
SHIPPED = {"paper": DEFAULT_FILE, "official": "report/claims/official_claims.yaml"}


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str
    role: str
    claim: str
    design: str
    expect: str
    kind: str = "train"
    of: str | None = None  # a secondary's primary
    quote: str = ""
    paper: str = ""
    where: dict[str, Any] = field(default_factory=dict)
    baseline: str | dict[str, Any] | None = None
    metric: str = ""
    lift: bool = False
    axis: str | None = None
    across: str | None = None  # describe: the other axis of the map
    scale: str = "linear"  # change: the axis scale the change is fitted on
    margin: float | None = None
    checks: tuple[str, ...] = ()
    region: dict[str, Any] = field(default_factory=dict)  # describe: where the theorem's assumptions hold
    of_claims: tuple[str, ...] = ()  # all_of
    beyond: str = ""

    @property
    def is_null(self) -> bool:
        return self.expect == "none"

    def figure_label(self) -> str:
        return {"table2": "Table 2", "table3": "Table 3", "table_e1": "Table E.1"}.get(self.figure, f"Fig. {self.figure}")


@dataclass(frozen=True)
class Check:
    """A declared manipulation check: its name, version, what it asks, what it is judged on and
    its thresholds (`params`)."""

    name: str
    version: int
    what: str
    judged_on: str
    params: dict[str, float]


@dataclass(frozen=True)
class ClaimsFile:
    version: int
    sha256: str
    source: str  # where it was read from, as given
    paper: str
    unit: tuple[str, ...]
    alpha: float
    test: str
    families: dict[str, str]  # role -> correction
    sequential: SequentialDesign
    checks: dict[str, Check]
    claims: tuple[Claim, ...]

    def by_id(self) -> dict[str, Claim]:
        return {c.id: c for c in self.claims}

    def family(self, role: str) -> list[Claim]:
        return [c for c in self.claims if c.role == role]


def read_claims(path: str | Path | None = None) -> ClaimsFile:
    """The claims file at `path`, or a shipped one by name (`SHIPPED`; default: the paper's),
    structurally checked."""
    shipped = SHIPPED["paper"] if path is None else SHIPPED.get(str(path))
    if shipped is not None:
        text = resources.files("ttrlab").joinpath(shipped).read_text(encoding="utf-8")
        source = f"ttrlab/{shipped}"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read claims file {str(path)!r}: {type(error).__name__}") from None
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"claims file {source!r} is not valid YAML{where}") from None
    return parse(data, source, hashlib.sha256(text.encode()).hexdigest())


def parse(data: Any, source: str, sha256: str) -> ClaimsFile:
    where = f"claims file {source!r}"
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping at the top")
    _require(isinstance(data.get("version"), int), f"{where}: 'version' must be an integer")
    alpha = data.get("alpha", 0.05)
    _require(isinstance(alpha, float) and 0 < alpha < 1, f"{where}: alpha {shown(alpha)} must be in (0, 1)")
    _require(data.get("test", "t") in ("t", "sign_flip"), f"{where}: test {shown(data.get('test'))}; allowed: t, sign_flip")
    families = data.get("families") or {"primary": "holm", "secondary": "benjamini_hochberg"}
    for role, correction in families.items():
        _require(role in ("primary", "secondary") and correction in CORRECTIONS,
                 f"{where}: families {shown(families)}; allowed: primary/secondary: {', '.join(CORRECTIONS)}")
    sequential = data.get("sequential") or {}
    try:
        design = SequentialDesign(tuple(sequential.get("looks", (3,))), sequential.get("spending", "pocock"), alpha)
    except (ValueError, TypeError) as error:
        raise UserError(f"{where}: sequential: {error}") from None
    checks = {}
    for name, entry in (data.get("checks") or {}).items():
        _require(isinstance(entry, dict), f"{where}: check {shown(name)} must be a mapping")
        params = {k: float(v) for k, v in entry.items() if k not in ("version", "what", "judged_on")}
        checks[name] = Check(name, int(entry.get("version", 1)), str(entry.get("what", "")),
                             " ".join(str(entry.get("judged_on", "")).split()), params)
    claims = tuple(_claim(entry, where) for entry in data.get("claims") or [])
    result = ClaimsFile(data["version"], sha256, source, str(data.get("paper", "")),
                        tuple(data.get("unit", ("task", "seed"))), alpha, data.get("test", "t"),
                        families, design, checks, claims)
    _structure(result, where)
    return result


def _structure(claims: ClaimsFile, where: str) -> None:
    ids = [c.id for c in claims.claims]
    _require(len(ids) == len(set(ids)), f"{where}: claim ids repeat")
    by_id = claims.by_id()
    for claim in claims.claims:
        label = f"{where}: claim {claim.id!r}"
        for name in claim.checks:
            _require(name in claims.checks, f"{label}: check {name!r} is not declared under 'checks'")
        if claim.of is not None:
            _require(by_id.get(claim.of) is not None and by_id[claim.of].role == "primary",
                     f"{label}: 'of' names {claim.of!r}, which is not a primary claim of this file")
        for other in claim.of_claims:
            _require(other in by_id and by_id[other].design != "all_of", f"{label}: of_claims names {other!r}, not a claim here")
    primaries = [c.figure for c in claims.claims if c.role == "primary"]
    _require(len(primaries) == len(set(primaries)), f"{where}: more than one primary claim for one figure or table")


def _claim(entry: Any, where: str) -> Claim:
    _require(isinstance(entry, dict) and "id" in entry, f"{where}: every claim is a mapping with an 'id'")
    known = set(Claim.__dataclass_fields__)
    unknown = set(entry) - known
    _require(not unknown, f"{where}: claim {entry['id']!r} has unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(known))}")
    values = dict(entry)
    values["figure"] = str(values.get("figure", ""))
    values["checks"] = tuple(values.get("checks") or ())
    values["of_claims"] = tuple(values.get("of_claims") or ())
    values["beyond"] = " ".join(str(values.get("beyond", "")).split())
    try:
        claim = Claim(**values)
    except TypeError as error:
        raise UserError(f"{where}: claim {entry['id']!r}: {error}") from None
    label = f"{where}: claim {claim.id!r}"
    _require(claim.role in ROLES, f"{label}: role {shown(claim.role)}; allowed: {', '.join(ROLES)}")
    _require(claim.expect in EXPECT, f"{label}: expect {shown(claim.expect)}; allowed: {', '.join(EXPECT)}")
    _require(claim.role != "secondary" or claim.of, f"{label}: a secondary claim names its primary in 'of'")
    _require(not claim.is_null or claim.design in ("describe", "all_of") or (claim.margin or 0) > 0,
             f"{label}: a claim of no effect (expect: none) declares its equivalence margin > 0")
    _require(claim.baseline is None or isinstance(claim.baseline, dict) or claim.baseline in BASELINES,
             f"{label}: baseline {shown(claim.baseline)}; allowed: {', '.join(BASELINES)} or a mapping of config values")
    _require(claim.scale in ("linear", "log"), f"{label}: scale {shown(claim.scale)}; allowed: linear, log")
    return claim


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)
