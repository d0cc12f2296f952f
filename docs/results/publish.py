"""Publish a results database as docs/results: a one-file copy of it (SQLite's backup API, so a
database still being written is copied consistently and without its WAL), the report built from
that copy (report/: index.html, figures as PNG and SVG, tables as CSV and Markdown), and the
verdicts on the paper's declared claims spliced into README.md between its markers: the one-line
headline (how many primary claims are decided) near the top, the verdict table below.

    .venv/bin/python docs/results/publish.py results/paper_cpu.sqlite

Nothing in README.md outside the markers is touched; tests/test_published_results.py checks
that the table there is what the published database gives."""
from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path

from ttrlab.core.io import write_text_atomic
from ttrlab.report import build_report, claims
from ttrlab.report.aggregate import build_cells
from ttrlab.sweep.store import FINISHED, ResultStore

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "paper_cpu.sqlite"
REPORT = HERE / "report"
MARKERS = {"verdicts": ("<!-- verdicts: begin -->", "<!-- verdicts: end -->"),
           "headline": ("<!-- headline: begin -->", "<!-- headline: end -->")}


def published(cells) -> dict[str, str]:
    """What README.md holds between each pair of markers, from the database's cells."""
    verdicts = claims.check(cells)
    return {"verdicts": f"{verdicts.header()}\n\n{verdicts.markdown(claims.tables.COMPACT).strip()}",
            "headline": f"**{verdicts.headline()}**"}


def splice(text: str, parts: dict[str, str]) -> str:
    for name, content in parts.items():
        begin, end = MARKERS[name]
        head, rest = text.split(begin)
        text = f"{head}{begin}\n{content}\n{end}{rest.split(end)[1]}"
    return text


def main(source: str) -> None:
    staged = DATABASE.with_suffix(".sqlite.new")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(staged) as dst:
        src.backup(dst)
    staged.replace(DATABASE)
    shutil.rmtree(REPORT, ignore_errors=True)
    os.chdir(HERE)  # the report names its database as given: "paper_cpu.sqlite", not this machine's path
    build_report(DATABASE.name, REPORT.name, compare_paper=True)
    with ResultStore(DATABASE, create=False) as store:
        cells = build_cells(store.runs(status=FINISHED))
    # the store opened the copy in WAL mode: fold it back into one file, as committed
    db = sqlite3.connect(DATABASE)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("VACUUM")
    db.close()
    readme = HERE / "README.md"
    parts = published(cells)
    write_text_atomic(readme, splice(readme.read_text(encoding="utf-8"), parts))
    front = HERE.parents[1] / "README.md"  # the project's front door quotes the headline too
    write_text_atomic(front, splice(front.read_text(encoding="utf-8"), {"headline": parts["headline"]}))
    print(f"{DATABASE} ({DATABASE.stat().st_size / 1e6:.1f} MB), {REPORT / 'index.html'}, {readme}")


if __name__ == "__main__":
    main(sys.argv[1])
