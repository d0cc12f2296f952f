"""The published reproduction (docs/results/): its verdict table is what `ttrlab report
--compare-paper` gives on the published database (so no number in it is typed by hand), every
figure and table of the paper has a verdict, every cpu spec carries a measured wall time, and the
published report loads in headless chromium with every figure decoded."""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ttrlab.report import compare_paper
from ttrlab.report.aggregate import build_cells
from ttrlab.sweep.store import FINISHED, ResultStore

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
DATABASE = RESULTS / "paper_cpu.sqlite"
BEGIN, END = "<!-- verdicts: begin -->", "<!-- verdicts: end -->"
PAPER = [f"Fig. {n}" for n in range(1, 13)] + ["Table 2", "Table 3", "Table E.1"]


def published_table() -> str:
    text = (RESULTS / "README.md").read_text(encoding="utf-8")
    return text.split(BEGIN)[1].split(END)[0].strip()


def test_the_verdict_table_is_what_the_published_database_gives(tmp_path):
    copy = tmp_path / "paper_cpu.sqlite"  # opening a store may write (WAL); never touch the published file
    shutil.copyfile(DATABASE, copy)
    with ResultStore(copy, create=False) as store:
        cells = build_cells(store.runs(status=FINISHED))
    generated = compare_paper.markdown(compare_paper.compare_paper(cells), compare_paper.COMPACT).strip()
    assert published_table() == generated


def test_every_figure_and_table_of_the_paper_has_a_verdict():
    rows = [line for line in published_table().splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    figures = {row.split(" | ")[0].lstrip("| ") for row in rows}
    assert figures == set(PAPER)
    assert all(any(v in row for v in compare_paper.VERDICTS) for row in rows)


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
