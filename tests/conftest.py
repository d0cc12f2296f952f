"""Shared fixtures: the real GLUE data under ../shared/data/glue, plus fixtures in the exact
upstream format for the files this machine does not have (QQP, QNLI train).

Tests that read ../shared/data say so with `glue_dir` or `@pytest.mark.needs_data("style", ...)`
(folders under it); both go through `require_data`, which skips the test where the folder is
missing, or fails it when TTRLAB_REQUIRE_DATA=1 (CI sets it: there a missing data folder is a
broken setup, not a reason to pass with the data tests skipped)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
GLUE = SHARED_DATA / "glue"

REQUIRE_DATA_ENV = "TTRLAB_REQUIRE_DATA"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
QQP_ROWS = [
    "201359\t303345\t303346\tWhy are African-Americans so beautiful?\tWhy are hispanics so beautiful?\t0",
    "263843\t69383\t380476\tI want to pursue PhD in Computer Science about social network,what is the open problem in social networks?\tI handle social media for a non-profit. Should I start going to social media networking events? Are there any good ones in the bay area?\t0",
    "172974\t266948\t175089\tIs there a reason why we should travel alone?\tWhat are some reasons to travel alone?\t1",
    "15329\t29298\t29299\tWhat is the best way to learn \"algebra\"?\tHow do I learn algebra fast?\t1",
]
QNLI_HEADER = "index\tquestion\tsentence\tlabel"
QNLI_ROWS = [
    "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it and most of the seasons that followed, Digimon Tamers takes a darker and more realistic approach to its story.\tnot_entailment",
    "1\tWhich missile batteries often have individual launchers several kilometres from one another?\tWhen MANPADS is operated by specialists, batteries may have several dozen teams deploying separately in small sections.\tnot_entailment",
    "2\tWhat two things does Popper argue Tarski's theory involves in an evaluation of truth?\tHe bases this interpretation on the fact that examples such as the one described above refer to two things: assertions and the facts to which they refer.\tentailment",
    "3\tWhat is the name of the village 9 miles north of Calafat where the Ottoman forces attacked the Russians?\tOn 31 December 1853, the Ottoman forces at Calafat moved against the Russian force at Chetatea or Cetate, a small village nine miles north of Calafat, and engaged them on 6 January 1854.\tentailment",
]


def _write(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def install_plugin_kind(tmp_path: Path, monkeypatch, module: str, source: str) -> Path:
    """Write a test-only run kind as module `module` into tmp_path and load it through
    TTRLAB_PLUGINS, the way a user adds a kind, so it reaches spawned workers, Ray workers and
    CLI subprocesses too. Returns the folder holding the module."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TTRLAB_PLUGINS", module)
    from ttrlab.sweep.kinds import load_plugins

    load_plugins()
    return plugin_dir


KINDS_DIR = Path(__file__).resolve().parent / "kinds"


def install_counting_kind(tmp_path: Path, monkeypatch) -> Path:
    """Load the "counting" kind (tests/kinds/counting_kind.py) through TTRLAB_PLUGINS, here and
    in every process started from here; returns the log its computations go to (see
    `counting_kind.computations`)."""
    log = tmp_path / "computations.log"
    monkeypatch.syspath_prepend(str(KINDS_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(KINDS_DIR), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TTRLAB_PLUGINS", "counting_kind")
    monkeypatch.setenv("TTRLAB_TEST_COUNT_LOG", str(log))
    from ttrlab.sweep.kinds import load_plugins

    load_plugins()
    return log


def require_data(path: Path, what: str = "shared data") -> None:
    """Skip the calling test when `path` is not a folder; fail it instead under TTRLAB_REQUIRE_DATA=1."""
    if path.is_dir():
        return
    message = f"{what} not found at {path}"
    if os.environ.get(REQUIRE_DATA_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_DATA_ENV}=1 requires it (CI must not skip the data tests)",
                    pytrace=False)
    pytest.skip(message)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "needs_data(*folders): reads these folders of ../shared/data (see require_data)")


def pytest_runtest_setup(item) -> None:
    for mark in item.iter_markers("needs_data"):
        for folder in mark.args:
            require_data(SHARED_DATA / folder, f"shared {folder} data")


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    """A GLUE folder with the real SST-2/CoLA/RTE/MRPC/QNLI-dev (linked) and self-written
    QQP and QNLI-train fixtures in the upstream layout (with the quotes GLUE really has)."""
    require_data(GLUE, "shared GLUE data")
    root = tmp_path_factory.mktemp("glue")
    for task in ("SST-2", "CoLA", "RTE", "MRPC"):
        (root / task).symlink_to(GLUE / task)
    (root / "QNLI").mkdir()
    (root / "QNLI" / "dev.tsv").symlink_to(GLUE / "QNLI" / "dev.tsv")
    _write(root / "QNLI" / "train.tsv", QNLI_HEADER, QNLI_ROWS)
    _write(root / "QQP" / "train.tsv", QQP_HEADER, QQP_ROWS)
    _write(root / "QQP" / "dev.tsv", QQP_HEADER, QQP_ROWS[:2])
    return root


@pytest.fixture(scope="session")
def minilm():
    """(tokenizer, pretrained template) loaded once for the whole session."""
    from ttrlab.models import load_classifier

    return load_classifier("minilm", 2, seed=0)
