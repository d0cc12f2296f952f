"""Publish a results database as docs/results: a one-file copy of it (SQLite's backup API, so a
database still being written is copied consistently and without its WAL), the report built from
that copy (report/: index.html, figures as PNG and SVG, tables as CSV and Markdown), and the
verdicts on the paper's declared claims spliced into README.md between its markers: the one-line
headline (how many primary claims are decided) near the top, the verdict table below; and the
paper's own raw Fig. 1 data (../shared/data/official/vary_pr.json), imported into
paper_official.sqlite and decided with report/claims/official_claims.yaml, beside the CPU-scale
verdicts of the same claims.

    .venv/bin/python docs/results/publish.py results/paper_cpu.sqlite [../shared/data/official/vary_pr.json]

Without the second argument the published paper_official.sqlite is kept as it is.

Nothing in README.md outside the markers is touched; tests/test_published_results.py checks
that the table there is what the published database gives."""
from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from ttrlab.core.io import write_text_atomic
from ttrlab.external import import_file
from ttrlab.report import build_report, claims
from ttrlab.report.aggregate import build_cells
from ttrlab.sweep.store import FINISHED, ResultStore

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "paper_cpu.sqlite"
OFFICIAL = HERE / "paper_official.sqlite"  # the paper's own Fig. 1 runs, imported (ttrlab import)
REPORT = HERE / "report"
MARKERS = {"verdicts": ("<!-- verdicts: begin -->", "<!-- verdicts: end -->"),
           "headline": ("<!-- headline: begin -->", "<!-- headline: end -->"),
           "official": ("<!-- official: begin -->", "<!-- official: end -->")}


def published(cells, official_cells) -> dict[str, str]:
    """What README.md holds between each pair of markers, from the two databases' cells."""
    verdicts = claims.check(cells)
    official = claims.check(official_cells, claims.load_claims("official"))
    beside = claims.tables.beside(official.decisions, verdicts.decisions,
                                  ("the paper's data (BERT-large)", "ttrlab at CPU scale (MiniLM)"))
    return {"verdicts": f"{verdicts.header()}\n\n{verdicts.markdown(claims.tables.COMPACT).strip()}",
            "headline": f"**{verdicts.headline()}**",
            "official": (f"{official.header()}\n\n**{official.headline()}**\n\n{beside.strip()}\n\n"
                         f"Every row of the paper's data, with its caveats:\n\n"
                         f"{official.markdown(claims.tables.COMPACT + ('why',)).strip()}")}


def cells_of(database: Path):
    """The cells of a database, read from a copy (opening a store may switch it to WAL)."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / database.name
        shutil.copyfile(database, copy)
        with ResultStore(copy, create=False) as store:
            return build_cells(store.runs(status=FINISHED))


def fold_wal(database: Path) -> None:
    """The store opened the database in WAL mode: fold it back into one file, as committed."""
    db = sqlite3.connect(database)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("VACUUM")
    db.close()


def splice(text: str, parts: dict[str, str]) -> str:
    for name, content in parts.items():
        begin, end = MARKERS[name]
        head, rest = text.split(begin)
        text = f"{head}{begin}\n{content}\n{end}{rest.split(end)[1]}"
    return text


def main(source: str, official_source: str | None = None) -> None:
    official_source = official_source and Path(official_source).resolve()  # before the chdir below
    staged = DATABASE.with_suffix(".sqlite.new")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(staged) as dst:
        src.backup(dst)
    staged.replace(DATABASE)
    shutil.rmtree(REPORT, ignore_errors=True)
    os.chdir(HERE)  # the report names its database as given: "paper_cpu.sqlite", not this machine's path
    build_report(DATABASE.name, REPORT.name, compare_paper=True)
    cells = cells_of(DATABASE)
    fold_wal(DATABASE)
    if official_source is not None:  # imported afresh, so the file holds exactly this source's runs
        staged = OFFICIAL.with_suffix(".sqlite.new")
        staged.unlink(missing_ok=True)
        import_file(official_source, "paper-vary-pr", staged)
        fold_wal(staged)
        staged.replace(OFFICIAL)
    official_cells = cells_of(OFFICIAL)
    readme = HERE / "README.md"
    parts = published(cells, official_cells)
    write_text_atomic(readme, splice(readme.read_text(encoding="utf-8"), parts))
    front = HERE.parents[1] / "README.md"  # the project's front door quotes the headline too
    write_text_atomic(front, splice(front.read_text(encoding="utf-8"), {"headline": parts["headline"]}))
    print(f"{DATABASE} ({DATABASE.stat().st_size / 1e6:.1f} MB), {REPORT / 'index.html'}, {readme}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
