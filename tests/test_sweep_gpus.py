"""The local executor with GPU specs, on a CPU machine: `gpu_slots` (pure), how the visible GPUs
are read, and real sweeps under CUDA_VISIBLE_DEVICES=0,1 where the 'sleepy' kind reports the
CUDA_VISIBLE_DEVICES its worker process saw. The Ray test declares two (fake) GPUs to a local
Ray instance and checks that tasks keep the CUDA_VISIBLE_DEVICES Ray gives them."""
import subprocess
import sys
import types

import pytest
import yaml

from test_sweep_run import sleepy, sleepy_spec  # noqa: F401  (fixture)
from ttrlab.core.errors import UserError
from ttrlab.sweep.executors import gpu_slots, local_slots, visible_gpus
from ttrlab.sweep.spec import Resources


def test_gpu_slots_share_fractions_and_group_whole_gpus():
    assert gpu_slots(1, ["0", "1"]) == ["0", "1"]
    assert gpu_slots(0.5, ["0", "1"]) == ["0", "1", "0", "1"]  # round the GPUs: a cap spreads
    assert gpu_slots(0.25, ["3"]) == ["3"] * 4
    assert gpu_slots(0.3, ["0"]) == ["0"] * 3  # as many as fit
    assert gpu_slots(0.1, ["0"]) == ["0"] * 10  # 1 / 0.1 is 9.999... in floats
    assert gpu_slots(2, ["0", "1", "2", "3", "4"]) == ["0,1", "2,3"]
    assert gpu_slots(1, ["GPU-5a1c", "MIG-0"]) == ["GPU-5a1c", "MIG-0"]
    assert gpu_slots(2, ["0"]) == [] and gpu_slots(1, []) == [] and gpu_slots(0.5, []) == []
    with pytest.raises(ValueError):
        gpu_slots(0, ["0"])


def test_visible_gpus_from_the_environment_or_torch(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", " 2, 3 ")
    assert visible_gpus() == (["2", "3"], "CUDA_VISIBLE_DEVICES=' 2, 3 '")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,1")  # CUDA stops at the first invalid id
    assert visible_gpus()[0] == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus()[0] == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(device_count=lambda: 3)))
    assert visible_gpus() == (["0", "1", "2"], "CUDA_VISIBLE_DEVICES unset, torch sees 3")


def test_local_slots_cap_and_errors(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert local_slots(Resources(gpus=0.5), None) == ["0", "1", "0", "1"]
    assert local_slots(Resources(gpus=0.5), 2) == ["0", "1"]  # --workers caps the pool
    assert local_slots(Resources(gpus=1), 8) == ["0", "1"]  # ... and never grows it
    assert local_slots(Resources(gpus=2), None) == ["0,1"]
    assert local_slots(Resources(cpus=1), 3) == [None, None, None]  # CPU runs: not pinned
    with pytest.raises(UserError) as error:
        local_slots(Resources(gpus=4), None)
    assert str(error.value) == ("resources.gpus 4: each run needs 4 GPUs, 2 visible (CUDA_VISIBLE_DEVICES='0,1'); "
                                "set resources.gpus to at most 2 or run where more are visible")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UserError, match=r"^resources.gpus 0.5: no GPU visible \(CUDA_VISIBLE_DEVICES=''\); "):
        local_slots(Resources(gpus=0.5), None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(device_count=lambda: 0)))
    with pytest.raises(UserError) as error:
        local_slots(Resources(gpus=1), None)
    assert str(error.value) == ("resources.gpus 1: no GPU visible (CUDA_VISIBLE_DEVICES unset, torch sees 0); "
                                "run on a GPU machine or set resources.gpus: 0")


def _seen(db):
    """{worker pid: the CUDA_VISIBLE_DEVICES it saw} over the finished runs."""
    from ttrlab.sweep import ResultStore

    with ResultStore(db) as store:
        runs = store.runs()
    seen = {}
    for run in runs:
        pid, value = run["metrics"]["nested.pid"], run["result"]["cuda_visible_devices"]
        assert seen.setdefault(pid, value) == value  # a worker keeps its GPU
    return seen, len(runs)


def test_one_worker_per_gpu(sleepy, tmp_path, monkeypatch):  # noqa: F811
    from ttrlab.sweep import run_sweep

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    spec = sleepy_spec(tmp_path / "s.yaml", [1.0, 2.0, 3.0], seeds=[0], resources={"gpus": 1})
    summary = run_sweep(spec, tmp_path / "r.sqlite", progress=False)
    assert summary["finished"] == 3
    seen, n = _seen(tmp_path / "r.sqlite")
    assert n == 3 and sorted(seen.values()) == ["0", "1"]  # two workers, one GPU each


def test_half_a_gpu_per_run_is_two_workers_per_gpu(sleepy, tmp_path, monkeypatch):  # noqa: F811
    from ttrlab.sweep import run_sweep

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    # 4 runs on 4 slots: each worker is handed one run when the pool starts
    spec = sleepy_spec(tmp_path / "s.yaml", [1.0, 2.0], seeds=[0, 1], resources={"gpus": 0.5})
    assert run_sweep(spec, tmp_path / "r.sqlite", progress=False)["finished"] == 4
    seen, _ = _seen(tmp_path / "r.sqlite")
    assert sorted(seen.values()) == ["0", "0", "1", "1"]


def test_two_gpus_per_run_and_a_replaced_worker_keeps_its_slot(sleepy, tmp_path, monkeypatch):  # noqa: F811
    from ttrlab.sweep import run_sweep

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({
        "kind": "sleepy", "resources": {"gpus": 2}, "seeds": [0],
        # the first run (spec order: the first worker, slot "4,5") kills its worker
        "grids": [{"name": "dies", "axes": {"x": [0.0]}, "base": {"die": True}},
                  {"name": "rest", "axes": {"x": [1.0, 2.0, 3.0]}}]}))
    summary = run_sweep(spec, tmp_path / "r.sqlite", workers=1, progress=False)
    assert (summary["finished"], summary["failed"]) == (3, 1)
    assert "worker process died (exit code 7)" in summary["failures"][0][1]
    seen, _ = _seen(tmp_path / "r.sqlite")
    assert list(seen.values()) == ["4,5"]  # the replacement, on the dead worker's GPUs


def test_no_gpu_visible_is_one_line_exit_2_and_writes_nothing(sleepy, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    spec = sleepy_spec(tmp_path / "s.yaml", [1.0], seeds=[0], resources={"gpus": 1})
    db = tmp_path / "r.sqlite"
    out = subprocess.run([sys.executable, "-m", "ttrlab.cli", "sweep", str(spec), "--db", str(db)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr == ("ttrlab: error: resources.gpus 1: no GPU visible (CUDA_VISIBLE_DEVICES=''); "
                          "run on a GPU machine or set resources.gpus: 0\n")
    assert out.stdout == "" and not db.exists()


@pytest.mark.ray
def test_ray_tasks_keep_the_gpus_ray_gives_them(sleepy, tmp_path, monkeypatch):  # noqa: F811
    ray = pytest.importorskip("ray")
    from ttrlab.sweep import run_sweep

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(sleepy), "TTRLAB_PLUGINS": "sleepy_kind"}})
    try:
        spec = sleepy_spec(tmp_path / "s.yaml", [1.0, 2.0], seeds=[0, 1], resources={"gpus": 1})
        summary = run_sweep(spec, tmp_path / "r.sqlite", executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert summary["finished"] == 4
    from ttrlab.sweep import ResultStore

    with ResultStore(tmp_path / "r.sqlite") as store:
        values = {r["result"]["cuda_visible_devices"] for r in store.runs()}
    assert values <= {"0", "1"} and values  # Ray's assignment, one GPU per task
