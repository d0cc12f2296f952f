"""The commands that only read (help, listings, status, a spec's dry run) import no torch,
transformers, peft or scipy: the command table loads only the chosen command's module, configs
load without the machinery that runs them, and peft's target-module table is read as data.
Each case runs in a fresh interpreter (this test process has imported torch long ago). Start-up
time itself is measured by benchmarks/cli_startup.py, not here."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "scipy")
PROBE = """
import json, sys
from ttrlab.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""

COMMANDS = [
    ["--help"], ["status", "--help"], ["report", "--help"], ["sweep", "--help"], ["methods"], ["tasks"],
    ["attacks"], ["defenses"], ["threats"], ["list", "threats"], ["gen-tasks"], ["gen-attacks"], ["list", "kinds"], ["list", "methods"],
    ["theory", "--help"], ["train", "--help"], ["gen-train", "--help"],
]
SPECS = ["specs/cpu/main.yaml", "specs/cpu/table3.yaml", "specs/cpu/theory_fig3.yaml", "specs/cpu/theory_main.yaml",
         "specs/cpu/fig4_fig9_fig10_rank.yaml", "specs/paper/fig1_fig6_upa.yaml",
         "specs/cpu/threats.yaml", "specs/cpu/dose_response.yaml"]


def heavy_modules(argv: list[str], tmp_path: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True, text=True,
                          cwd=REPO, env=_env(tmp_path))
    return json.loads(proc.stderr.strip().splitlines()[-1])


def _env(tmp_path: Path) -> dict:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_reading_commands_import_no_machinery(argv, tmp_path):
    assert heavy_modules(argv, tmp_path) == []


@pytest.mark.parametrize("spec", SPECS)
def test_a_dry_run_imports_no_machinery(spec, tmp_path):
    assert heavy_modules(["sweep", spec, "--db", str(tmp_path / "none.sqlite"), "--dry-run"], tmp_path) == []


def test_the_control_imports_torch(tmp_path):
    """The probe can tell: a command that trains imports torch."""
    code = PROBE.format(argv=["--help"], heavy=HEAVY).replace("main(['--help'])", "import ttrlab.training.loop")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=_env(tmp_path))
    assert "torch" in json.loads(proc.stderr.strip().splitlines()[-1])


def test_peft_table_read_as_data_is_peft_own():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    from ttrlab.methods.peft_tables import _read_literal

    assert _read_literal() == TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING


def test_every_command_is_in_the_table_and_registered_by_its_module():
    import argparse
    import importlib

    from ttrlab.cli import COMMANDS

    for name, command in COMMANDS.items():
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers()
        importlib.import_module(command.module).register(subparsers)
        assert name in subparsers.choices, (name, command.module)


def test_list_is_the_listing_commands(capsys):
    from ttrlab.cli import main

    assert main(["methods"]) == 0
    alone = capsys.readouterr().out
    assert main(["list", "methods"]) == 0
    assert capsys.readouterr().out == alone and "lora" in alone
