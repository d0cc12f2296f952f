"""`build_report(db, out_dir)`: one self-contained HTML page (figures embedded as base64 SVG, no
script, no network: a Content-Security-Policy forbids every fetch) and beside it the figures as
PNG and SVG and the tables as CSV and Markdown.

The page is its registered sections (`report.sections`), each shown only where the database holds
what it needs: a database of one's own sweep gets the comparisons and figures of what it varied,
not eleven notes on the paper's figures it cannot draw. The HTML is rendered by Jinja2 with
autoescape on, so every name that comes from user input (task names, spec text, errors, ...) is
escaped; every file is written atomically (`core.io`), into a folder ttrlab may write
(`core.io.check_output_folder`).
"""
from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

from ttrlab.core.io import check_output_folder, own_folder
from ttrlab.report import stats
from ttrlab.report.aggregate import fmt
from ttrlab.report.data import ReportData
from ttrlab.report.output import ReportFolder

PAGE = "page.html"
INDEX = "index.html"


def build_report(db: str | os.PathLike, out_dir: str | os.PathLike, claims: str | os.PathLike | None = None,
                 compare_paper: bool = False, probes: str | os.PathLike | None = None) -> Path:
    """Write the report of database `db` into `out_dir`; return the path of index.html.
    `claims`: a claims file to decide (default: the paper's, `report/claims/paper_claims.yaml`);
    the claims section is on the page when the runs can test one of them, or when `claims` is
    given or `compare_paper` asks for it (then also paper_comparison.md/.csv). `probes`: the
    advisor's stored probes (`ttrlab advise --probes`), for the Advisor section (held-out ρ of the
    predictors on this database's configurations; nothing is probed here)."""
    from ttrlab.report.sections import SECTIONS

    check_output_folder(out_dir, "report folder")
    data = ReportData.read(db, claims, compare_paper, probes)
    folder = ReportFolder(own_folder(out_dir, "report folder"))
    shown = []
    for name in SECTIONS.registered():
        section = SECTIONS.get(name)
        context = section.build(data, folder)
        if context is not None:
            shown.append({"id": section.id, "title": section.title, "template": section.template, "context": context})
    folder.finish({name for n in SECTIONS.registered() for name in SECTIONS.get(n).files})
    page = {"title": _title(data.sweeps), "generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "database": data.database, "n_figures": sum(p.suffix == ".svg" for p in folder.written)}
    html = _environment().get_template(PAGE).render(sections=shown, page=page, rules=_rules())
    return folder.write(INDEX, html)


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                       autoescape=select_autoescape(["html"]), undefined=StrictUndefined)


def _rules() -> dict[str, Any]:
    """The numbers the statistics paragraph quotes."""
    return {"min_n": stats.MIN_N, "alpha": stats.ALPHA, "power": stats.POWER,
            "min_discordant": stats.MIN_DISCORDANT,
            "exact_pairs": int(math.log2(stats.EXACT_ASSIGNMENTS)),
            "floors": ", ".join(f"{fmt(stats.sign_flip_floor(n), 4)} ({n})" for n in range(2, 7))}


def _title(sweeps) -> str:
    names = [s.name for s in sweeps]
    if not names:
        return "empty database"
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
