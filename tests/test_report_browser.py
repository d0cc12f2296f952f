"""The HTML report in a real headless browser (Debian's chromium): it loads with no console
message at all (the report has no script; a CSP violation or a broken resource would log), the
figures decode (checked by a probe copy of the page that counts decoded images), a screenshot is
written, and the DOM chromium builds from a database holding every attack has a headline row
for each and the Table E.1 and Table 3 sections with the paper's numbers; from a database with
generative tasks, outcomes and learning curves (test_report_table3's), Table 3 per task, the
paired tests and the learning-curve figures and table. Skipped when chromium is not installed."""
import re
import shutil
import subprocess

import pytest

from test_report_build import (
    CLASSIFICATION_ATTACKS,
    GENERATIVE_ATTACKS,
    all_attack_configs,
    headline_rows,
    make_db,
    tables_of,
    upa_configs,
)

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0"]
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.querySelectorAll("img.figure")];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100).length;
  console.log("PROBE images " + ok + "/" + imgs.length + " sections " + document.querySelectorAll("section").length);
});
</script></body>"""


def sections_in(html: str) -> int:
    """How many sections the page holds (the ones the database has data for)."""
    return html.count('<section id="')


def chromium(page, tmp_path, *extra):
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    return out, console


def build(tmp_path_factory, name, configs):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from ttrlab.report import build_report

    root = tmp_path_factory.mktemp(name)
    return build_report(make_db(root / "r.sqlite", configs), root / "report")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build(tmp_path_factory, "browser", upa_configs())


@pytest.fixture(scope="module")
def every_attack(tmp_path_factory):
    return build(tmp_path_factory, "every_attack", all_attack_configs())


@pytest.fixture(scope="module")
def table3(tmp_path_factory):
    from test_report_table3 import configs, planted

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from ttrlab.report import build_report

    root = tmp_path_factory.mktemp("table3")
    return build_report(make_db(root / "r.sqlite", configs(), result=planted), root / "report")


def test_console_errors_are_detected(tmp_path):
    """The check itself can fail: a page with a script error is caught."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    _, console = chromium(page, tmp_path, "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in console)


def test_report_loads_without_console_messages(report, tmp_path):
    out, console = chromium(report, tmp_path, "--dump-dom")
    assert out.returncode == 0
    assert console == []
    dom = out.stdout
    assert dom.count('src="data:image/svg+xml;base64,') == 2
    assert "Fig. 1." in dom and "Each method vs full fine-tuning at the same setting" in dom


def test_figures_decode_in_the_browser_and_screenshot(report, tmp_path):
    probe = report.with_name("probe.html")
    html = report.read_text()
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)  # let the probe script run
    probe.write_text(html.replace("</body>", PROBE, 1))
    _, console = chromium(probe, tmp_path, "--dump-dom")
    assert any(f"PROBE images 2/2 sections {sections_in(html)}" in line for line in console), console
    shot = report.with_name("screenshot.png")
    chromium(report, tmp_path, f"--screenshot={shot}", "--window-size=1280,1800", "--hide-scrollbars")
    assert shot.stat().st_size > 20_000


def test_every_attack_in_the_browser_headline_table_e1_and_table_3(every_attack, tmp_path):
    out, console = chromium(every_attack, tmp_path, "--dump-dom")
    assert out.returncode == 0 and console == []
    dom = out.stdout
    headline = headline_rows(dom)
    assert {(r["kind"], r["attack"]) for r in headline} == (
        {("train", a) for a in CLASSIFICATION_ATTACKS} | {("generative", a) for a in GENERATIVE_ATTACKS})
    assert all(r["verdict"].startswith("n too small") for r in headline)  # two seeds: nothing marked
    assert tables_of(dom).bold["summary"] == []
    sections = tables_of(dom).sections
    e1 = " ".join(" ".join(r) for r in sections["table-e1"])
    for number in ("82.91 ± 6.77", "89.14 ± 1.86", "91.78 ± 0.47", "92.77 ± 0.21", "51.37 ± 0.11", "100.00 ± 0.00",
                   "75.34 ± 0.93", "87.28 ± 1.34"):
        assert f"paper {number}" in e1, number
    assert {"MT", "CL-BPA", "IL-BPA", "S-BPA"} <= {r[1] for r in sections["table-e1"][1:]}
    t3 = " ".join(" ".join(r) for r in sections["table3"])
    for number in ("90.91", "84.85", "92.93", "88.89", "86.87"):
        assert f"paper {number}" in t3, number
    assert "Appendix E.3, Table 3" in dom and "Appendix E.1" in dom
    probe = every_attack.with_name("probe.html")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", every_attack.read_text())
    probe.write_text(html.replace("</body>", PROBE, 1))
    _, console = chromium(probe, tmp_path, "--dump-dom")
    images = html.count('<img src="data:image/svg+xml;base64,')
    assert images == 17  # Figs. 1, 6 (UPA); 2, 7, 8 for BPA and for each of the four other backdoors
    assert any(f"PROBE images {images}/{images} sections {sections_in(html)}" in line for line in console), console


def test_table3_tasks_paired_tests_and_learning_curves_in_the_browser(table3, tmp_path):
    out, console = chromium(table3, tmp_path, "--dump-dom")
    assert out.returncode == 0 and console == []
    sections = tables_of(out.stdout).sections
    t3 = sections["table3"]
    assert t3[0][:3] == ["task", "attack", "paper row"]
    assert {(r[0], r[1]) for r in t3[1:]} == {("jailbreak", "badnet"), ("jailbreak", "vpi"), ("refusal", "badnet")}
    assert all("paper" in r[8] for r in t3[1:] if r[0] == "jailbreak")
    assert not any("paper" in c for r in t3[1:] if r[0] == "refusal" for c in r)
    paired = {(r[0], r[1]): r for r in sections["table3-paired"][1:]}
    assert paired[("jailbreak", "badnet")][7:10] == ["8", "1", "seed 0: b 5, c 0, p 0.062; seed 1: b 3, c 1, p 0.625"]
    assert paired[("refusal", "badnet")][9] == "seed 0: b 2, c 1, p 1; seed 1: b 0, c 0, p 1"
    assert paired[("refusal", "badnet")][12].startswith("n too small")  # the seed-level test: 2 seeds
    reach = [r for r in sections["curves"] if r and r[0].startswith("Learning curves (")]
    assert ["Learning curves (generative)", "refusal · BadNet", "0.02", "LoRA r=8, α=16", "2", "4", "3", "16",
            "not reached in 1 of 2 seeds"] in reach
    probe = table3.with_name("probe.html")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", table3.read_text())
    probe.write_text(html.replace("</body>", PROBE, 1))
    _, console = chromium(probe, tmp_path, "--dump-dom")
    # the generative and classification curves, and what the sweep varied for its classification runs (no
    # paper figure draws one rate per attack)
    assert html.count('<img src="data:image/svg+xml;base64,') == 3 and 'id="varied_1"' in html
    assert any(f"PROBE images 3/3 sections {sections_in(html)}" in line for line in console), console
