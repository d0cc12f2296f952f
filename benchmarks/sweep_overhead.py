"""Per-run overhead of the sweep machinery on tiny runs (MiniLM, 64 SST-2 examples, 3 steps).

Side by side in one process, against the baseline of calling `run_experiment` directly with the
model already cached:

- inline sweep      : spec expansion + results database (one transaction per run), same process
- local, 1 worker   : + one spawned long-lived worker (process start + model load once, amortized)
- fresh process/run : what a sweep would cost if every run started a new process (one local
                      sweep per run): process start + imports + model load every time

    python benchmarks/sweep_overhead.py [--runs 4] [--data-dir ../shared/data/glue]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _readme  # benchmarks/_readme.py: --write-readme

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    args = _readme.parse_args(parser)

    import torch

    from ttrlab import RunConfig, run_experiment
    from ttrlab.sweep import run_sweep

    torch.set_num_threads(1)
    base = dict(task="sst2", model="minilm", train_size=64, eval_size=64, max_steps=3, batch_size=8,
                lr_preset="cpu", method="lora", data_dir=args.data_dir)
    seeds = list(range(args.runs))

    def spec(name, chosen):
        return {"name": name, "base": base, "seeds": chosen, "axes": {"attack": ["upa"], "rate": [0.1]},
                "resources": {"cpus": 1}}

    rows = []
    run_experiment(RunConfig(**base, attack="upa", rate=0.1, seed=99))  # warm the model cache
    started = time.perf_counter()
    train_seconds = 0.0
    for seed in seeds:
        result = run_experiment(RunConfig(**base, attack="upa", rate=0.1, seed=seed))
        train_seconds += result["train"]["seconds"] + result["train"]["eval_seconds"]
    baseline = time.perf_counter() - started
    rows.append(("run_experiment, warm cache", baseline))

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run_sweep(spec("inline", seeds), Path(tmp) / "inline.sqlite", executor="inline", progress=False)
        rows.append(("inline sweep (+ DB)", time.perf_counter() - started))

        started = time.perf_counter()
        run_sweep(spec("local", seeds), Path(tmp) / "local.sqlite", executor="local", workers=1, progress=False)
        rows.append(("local, 1 long-lived worker", time.perf_counter() - started))

        started = time.perf_counter()
        for seed in seeds:
            run_sweep(spec(f"fresh{seed}", [seed]), Path(tmp) / "fresh.sqlite", executor="local", workers=1,
                      progress=False)
        rows.append(("fresh process per run", time.perf_counter() - started))

    n = len(seeds)
    print(f"{n} tiny runs each (MiniLM, 64 examples, 3 steps); training+eval inside the runs: "
          f"{train_seconds / n:.2f} s/run; torch threads 1; load average {os.getloadavg()[0]:.1f}")
    print(f"{'mode':30s} {'total s':>8s} {'s/run':>7s} {'overhead s/run':>15s} {'× baseline':>11s}")
    for name, total in rows:
        print(f"{name:30s} {total:8.2f} {total / n:7.2f} {(total - baseline) / n:15.2f} {total / baseline:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(_readme.run(main))
