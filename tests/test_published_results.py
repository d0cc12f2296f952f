"""The published reproduction (docs/results/): its verdict table and its headline are what the
declared claims give on the published database (so no number in them is typed by hand), every
figure and table of the paper has a verdict, every cpu spec carries a measured wall time, and the
published report loads in headless chromium with every figure decoded."""
import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ttrlab.report.aggregate import build_cells
from ttrlab.sweep.store import FINISHED, ResultStore

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
DATABASE = RESULTS / "paper_cpu.sqlite"
OFFICIAL = RESULTS / "paper_official.sqlite"  # the paper's own Fig. 1 data, imported
PAPER = [f"Fig. {n}" for n in range(1, 13)] + ["Table 2", "Table 3", "Table E.1"]


def _publisher():
    spec = importlib.util.spec_from_file_location("publish", RESULTS / "publish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def published(name: str) -> str:
    begin, end = _publisher().MARKERS[name]
    text = (RESULTS / "README.md").read_text(encoding="utf-8")
    return text.split(begin)[1].split(end)[0].strip()


def _cells(database: Path, tmp_path: Path):
    copy = tmp_path / database.name  # opening a store may write (WAL); never touch the published file
    shutil.copyfile(database, copy)
    with ResultStore(copy, create=False) as store:
        return build_cells(store.runs(status=FINISHED))


def test_the_verdicts_and_the_headline_are_what_the_published_databases_give(tmp_path):
    generated = _publisher().published(_cells(DATABASE, tmp_path), _cells(OFFICIAL, tmp_path))
    for name in ("verdicts", "headline", "official"):
        assert published(name) == generated[name].strip()


@pytest.mark.needs_data("official")
def test_the_published_paper_data_is_the_papers_file_imported(tmp_path):
    """paper_official.sqlite holds exactly the runs `ttrlab import` makes of the paper's file."""
    from ttrlab.external import import_file

    fresh = tmp_path / "fresh.sqlite"
    import_file(REPO.parent / "shared" / "data" / "official" / "vary_pr.json", "paper-vary-pr", fresh)

    def runs(database):
        with ResultStore(database, create=False) as store:
            return sorted((r["run_key"], r["metrics"]["clean.accuracy"]) for r in store.runs(status=FINISHED))

    copy = tmp_path / "published.sqlite"
    shutil.copyfile(OFFICIAL, copy)
    assert runs(copy) == runs(fresh) and len(runs(fresh)) == 320


def test_the_project_readme_quotes_the_same_headline():
    begin, end = _publisher().MARKERS["headline"]
    front = (REPO / "README.md").read_text(encoding="utf-8")
    assert front.split(begin)[1].split(end)[0].strip() == published("headline")


def test_the_published_report_names_its_database_as_publish_gave_it():
    """publish.py builds the report from inside docs/results: the page names "paper_cpu.sqlite",
    not the folder of the machine that published it."""
    header = (RESULTS / "report" / "index.html").read_text(encoding="utf-8").split("</header>")[0]
    assert header.split("· database ")[1].startswith("paper_cpu.sqlite</p>")


def test_the_headline_is_on_the_first_screen():
    text = (RESULTS / "README.md").read_text(encoding="utf-8")
    assert text.index("<!-- headline: begin -->") < 1500 and "primary claims decided after correction" in published("headline")


def test_every_figure_and_table_of_the_paper_has_a_verdict():
    rows = [line for line in published("verdicts").splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    figures = {row.split(" | ")[0].lstrip("| ") for row in rows}
    assert figures == set(PAPER)
    assert all(row.split(" | ")[3] for row in rows)  # every row carries a verdict


@pytest.mark.parametrize("spec", sorted((REPO / "specs" / "cpu").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_cpu_spec_carries_a_measured_wall_time(spec):
    wall = yaml.safe_load(spec.read_text(encoding="utf-8"))["expected_wall_time"]
    assert wall["minutes"] > 0 and wall["workers"] >= 1 and wall["machine"]
    assert str(wall["basis"]).startswith("measured"), wall["basis"]


@pytest.mark.browser
def test_the_published_report_loads_in_chromium(tmp_path):
    from test_report_browser import CHROMIUM, PROBE, chromium

    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    index = RESULTS / "report" / "index.html"
    out, console = chromium(index, tmp_path, "--dump-dom")
    assert out.returncode == 0 and console == []
    assert 'id="paper"' in out.stdout
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", index.read_text(encoding="utf-8"))
    images = html.count('<img src="data:image/svg+xml;base64,')
    assert images >= 12  # Figs. 1-12 at least, each embedded
    probe = tmp_path / "probe.html"  # a copy with the probe script, the CSP removed so it runs
    probe.write_text(html.replace("</body>", PROBE, 1), encoding="utf-8")
    _, console = chromium(probe, tmp_path, "--dump-dom")
    assert any(f"PROBE images {images}/{images} " in line for line in console), console
