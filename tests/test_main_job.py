"""`ttrlab run`: the main job's spec is valid, and its machinery (sweep → DB → report → table)
works end to end, here on a shrunken copy of the spec so the test stays fast."""
import copy

from ttrlab.cli import main
from ttrlab.cli import run as run_command
from ttrlab.sweep import load_spec


def test_main_job_spec_is_valid_and_sized():
    spec = load_spec(run_command.main_job_spec())
    runs = spec.expand().runs
    assert len(runs) == 20
    assert {r.config.method for r in runs} == {"ff", "lora"}
    assert {r.config.attack for r in runs} == {"upa", "bpa"}


def test_main_job_end_to_end_on_a_tiny_copy(tmp_path, glue_dir, monkeypatch, capsys):
    real = run_command.main_job_spec

    def tiny(data_dir=None, **base):
        spec = copy.deepcopy(real(str(glue_dir), **base))
        spec["base"].update(train_size=16, eval_size=16, max_steps=2)
        spec["seeds"] = [0]
        spec["grids"] = [g for g in spec["grids"] if g["name"] in ("upa", "bpa")]
        for grid in spec["grids"]:
            grid["axes"]["rate"] = grid["axes"]["rate"][:1]
        return spec

    monkeypatch.setattr(run_command, "main_job_spec", tiny)
    db, out = tmp_path / "main.sqlite", tmp_path / "report"
    assert main(["run", "--db", str(db), "--out", str(out), "--executor", "inline", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert (out / "index.html").is_file()
    assert "ASR" in printed and "lora" in printed and "ff" in printed
    assert "4 runs now (0 already" in printed.replace("\n", " ")
    # resumable: a second call runs nothing and finds the four runs in the database
    assert main(["run", "--db", str(db), "--out", str(out), "--executor", "inline", "--quiet"]) == 0
    assert "0 runs now (4 already" in capsys.readouterr().out.replace("\n", " ")
