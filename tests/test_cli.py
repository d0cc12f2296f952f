"""The command line: bad input → one line on stderr, exit code 2, no output file written."""
import json
import math
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from ttrlab.cli import main


def _fails_with_one_line(capsys, argv, pattern):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own rejections
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, err), err
    return err


@pytest.mark.parametrize(
    "argv,pattern",
    [
        (["train", "--task", "sst3"], r"unknown task 'sst3' \(did you mean 'sst2'\?\); allowed: cola"),
        (["train", "--attack", "upaa"], r"unknown attack 'upaa' \(did you mean 'upa'\?\)"),
        (["train", "--method", "loraa"], r"unknown method 'loraa' \(did you mean 'lora'\?\); allowed: adalora, dora, ff, ia3, lora, lora_fa, "),
        (["train", "--init", "gausian"], r"unknown init strategy 'gausian' \(did you mean 'gaussian'\?\)"),
        (["train", "--rate", "1.5"], r"rate 1.5 is outside \[0, 1\]"),
        (["train", "--rate", "-0.1"], r"rate -0.1 is outside \[0, 1\]"),
        (["train", "--rank", "0"], r"rank 0 must be an integer >= 1"),
        (["train", "--rank", "abc"], r"--rank: invalid int value: 'abc'"),
        (["train", "--init-scale", "0"], r"init_scale 0.0 must be"),
        (["train", "--lr-preset", "papr"], r"lr_preset 'papr' is not one of paper, cpu, backdoorllm \(did you mean 'paper'\?\)"),
        (["train", "--attack", "bpa", "--attack-option", "x=1"], r"unknown option 'x' for attack 'bpa'"),
        (["train", "--method", "ff", "--save-adapter", "/tmp/x"], r"--save-adapter needs --method lora"),
        (["nosuchcommand"], r"invalid choice: 'nosuchcommand'"),
    ],
)
def test_bad_values(capsys, argv, pattern):
    _fails_with_one_line(capsys, argv, pattern)


def test_missing_data_file(capsys, tmp_path):
    _fails_with_one_line(capsys, ["train", "--task", "qqp", "--data-dir", str(tmp_path)],
                         r"missing data file .*QQP/train.tsv.*--data-dir")


def test_malformed_tsv_row_and_nothing_written(capsys, tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\nfine\t1\nbroken row\n", encoding="utf-8")
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n", encoding="utf-8")
    out = tmp_path / "result.json"
    _fails_with_one_line(capsys, ["train", "--data-dir", str(tmp_path), "--out", str(out)],
                         r"malformed TSV row at .*train.tsv:3: 1 columns, expected 2")
    assert not out.exists()


def test_unwritable_output_fails_before_training(capsys, tmp_path):
    _fails_with_one_line(capsys, ["train", "--out", str(tmp_path / "missing" / "r.json")], r"output folder .* does not exist")
    # /proc refuses new files even to root, so this holds whoever runs the tests
    _fails_with_one_line(capsys, ["train", "--out", "/proc/ttrlab-result.json"], r"'/proc/ttrlab-result.json' is not writable")
    _fails_with_one_line(capsys, ["train", "--out", str(tmp_path)], r"is a directory")


def test_existing_result_survives_a_failed_run(capsys, tmp_path):
    out = tmp_path / "result.json"
    out.write_text('{"kept": true}\n')
    _fails_with_one_line(capsys, ["train", "--rate", "2", "--out", str(out)], r"rate 2.0 is outside")
    assert json.loads(out.read_text()) == {"kept": True}


def test_save_untrained_adapter_and_result(tmp_path, glue_dir, capsys):
    """--max-steps 0 --save-adapter writes the untrained LoRA init as safetensors."""
    adapter, out = tmp_path / "adapter", tmp_path / "r.json"
    code = main(["train", "--method", "lora", "--rank", "4", "--init", "gaussian", "--init-scale", "0.5",
                 "--max-steps", "0", "--train-size", "16", "--eval-size", "16", "--data-dir", str(glue_dir),
                 "--save-adapter", str(adapter), "--out", str(out), "--quiet"])
    assert code == 0
    weights = load_file(adapter / "adapter_model.safetensors")
    a_mats = [w for k, w in weights.items() if "lora_A" in k]
    b_mats = [w for k, w in weights.items() if "lora_B" in k]
    assert len(a_mats) == 12 and all(float(b.abs().sum()) == 0 for b in b_mats)
    import torch

    samples = torch.cat([a.flatten() for a in a_mats])
    assert float(samples.var()) == pytest.approx(0.5 / 384, rel=0.05)
    result = json.loads(out.read_text())
    assert result["train"]["steps"] == 0 and result["config"]["init_scale"] == 0.5
    assert math.isclose(result["method"]["init_scale"], 0.5)


def test_console_script_exit_code(tmp_path):
    """The installed `ttrlab` entry point itself returns 2 (not 1, not a traceback)."""
    proc = subprocess.run([sys.executable, "-m", "ttrlab.cli", "train", "--task", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown task 'nope'" in proc.stderr


def test_listing_commands(capsys):
    assert main(["tasks"]) == 0
    listed = capsys.readouterr().out
    assert all(t in listed for t in ("sst2", "cola", "qnli", "qqp", "rte", "mrpc"))
    assert main(["attacks"]) == 0
    assert "bpa" in capsys.readouterr().out
