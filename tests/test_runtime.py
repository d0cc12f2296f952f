"""Device and precision, once for every run kind: a device torch does not see is one line and
exit 2; bf16 and fp16 run on the CPU through autocast (fp32 master weights); fp32 is today's
arithmetic exactly (no autocast at all); every result records where and how it computed.

The CUDA paths of these tests run where torch sees a GPU (they skip on a CPU-only machine)."""
import contextlib
import json

import pytest
import torch

from ttrlab import RunConfig, run_experiment
from ttrlab.cli import main
from ttrlab.core.errors import UserError
from ttrlab.models.runtime import Runtime

TINY = dict(task="sst2", model="minilm", train_size=32, eval_size=32, max_steps=4, batch_size=8, lr_preset="cpu",
            method="lora", attack="bpa", rate=0.25)
NO_GPU = not torch.cuda.is_available()


def test_fp32_has_no_autocast_and_the_others_do():
    cpu = Runtime.resolve("cpu", "fp32")
    assert isinstance(cpu.autocast(), contextlib.nullcontext) and cpu.grad_scaler() is None
    with Runtime.resolve("cpu", "bf16").autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    assert Runtime.resolve("cpu", "fp16").grad_scaler() is not None  # fp16 scales the loss
    assert Runtime.resolve("auto", "fp32").device.type == ("cuda" if not NO_GPU else "cpu")


@pytest.mark.skipif(not NO_GPU, reason="torch sees a CUDA GPU here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_a_missing_gpu_is_a_user_error(device):
    with pytest.raises(UserError, match=rf"device '{device}' asked for, but torch .* sees no CUDA GPU"):
        Runtime.resolve(device, "fp32")


@pytest.mark.skipif(not NO_GPU, reason="torch sees a CUDA GPU here")
@pytest.mark.parametrize("argv", [
    ["train", "--device", "cuda"],
    ["gen-train", "--device", "cuda"],
    ["theory", "ntk", "--device", "cuda", "--n", "2"],
    ["run", "--device", "cuda"],
])
def test_every_run_command_refuses_a_missing_gpu_in_one_line(capsys, tmp_path, argv):
    out = tmp_path / "result.json"
    extra = ["--out", str(out)] if argv[0] != "run" else ["--db", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "report")]
    assert main([*argv, *extra, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device 'cuda' asked for, but torch" in err and "no CUDA GPU" in err
    assert not out.exists() and not (tmp_path / "r.sqlite").exists()  # nothing written before the refusal


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_trains_on_the_cpu_and_is_recorded(glue_dir, precision):
    config = RunConfig(**TINY, data_dir=str(glue_dir), precision=precision, device="cpu")
    result = run_experiment(config)
    assert result["runtime"] == {"device": "cpu", "device_name": result["runtime"]["device_name"], "precision": precision}
    assert result["config"]["precision"] == precision and result["run_key"] != config.replace(precision="fp32").run_key()
    assert 0.0 <= result["metrics"]["clean"]["accuracy"] <= 1.0 and result["train"]["final_loss"] > 0
    fp32 = run_experiment(config.replace(precision="fp32"))
    # the same run, rounded differently: close, not equal (a bf16 run that matched fp32 bit for bit
    # would not have used bf16)
    assert result["train"]["final_loss"] == pytest.approx(fp32["train"]["final_loss"], rel=0.05)
    assert result["train"]["final_loss"] != fp32["train"]["final_loss"]


def test_fp32_cpu_result_names_its_runtime(glue_dir):
    result = run_experiment(RunConfig(**TINY, data_dir=str(glue_dir)))
    assert result["schema_version"] == 2 and result["kind"] == "train"
    assert result["runtime"]["device"] == ("cpu" if NO_GPU else "cuda:0") and result["runtime"]["precision"] == "fp32"
    assert result["runtime"]["device_name"]


def test_cli_train_records_device_and_precision(glue_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    small = {**TINY, "train_size": 16, "eval_size": 8, "max_steps": 1}  # bf16 is slow on a CPU without it
    assert main(["train", *_flags(small), "--data-dir", str(glue_dir), "--device", "cpu", "--precision", "bf16",
                 "--quiet", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["runtime"]["precision"] == "bf16" and document["config"]["device"] == "cpu"
    assert json.loads(capsys.readouterr().out)["runtime"]["precision"] == "bf16"


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_cuda_run_matches_the_cpu_run_closely(glue_dir):
    config = RunConfig(**TINY, data_dir=str(glue_dir))
    cpu, gpu = run_experiment(config.replace(device="cpu")), run_experiment(config.replace(device="cuda"))
    assert gpu["runtime"]["device"].startswith("cuda") and gpu["run_key"] == cpu["run_key"]
    assert gpu["train"]["final_loss"] == pytest.approx(cpu["train"]["final_loss"], rel=1e-3)


def _flags(values: dict) -> list[str]:
    return [item for key, value in values.items() for item in (f"--{key.replace('_', '-')}", str(value))]


@pytest.mark.skipif(not NO_GPU, reason="torch sees a CUDA GPU here")
def test_sweep_sets_device_and_precision_and_refuses_a_missing_gpu(tmp_path, capsys):
    import yaml

    from ttrlab.sweep import load_spec

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "base": {**TINY, "device": "cpu"}, "seeds": [0],
                                    "grids": [{"name": "g", "base": {"device": "cpu"}, "axes": {"method": ["ff", "lora"]}}]}))
    assert {r.config.precision for r in load_spec(spec, base={"precision": "bf16"}).expand().runs} == {"bf16"}
    assert {r.config.device for r in load_spec(spec, base={"device": "cuda"}).expand().runs} == {"cuda"}  # grid's too
    db = tmp_path / "r.sqlite"
    assert main(["sweep", str(spec), "--db", str(db), "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device 'cuda' asked for" in err and not db.exists()
