"""FF and LoRA training against this machine's FLOP limit, before and after the optimizer and
allocator changes, side by side in one process.

One training run per row: SST-2 (2,000 examples, the main job's data), MiniLM, batch 8, length
bucketing, the main job's learning rates, the same seed and steps. "before" is the loop as it
was: torch's default (per-tensor) AdamW and glibc's default malloc; "after" is today's loop
(fused AdamW, freed memory kept, `runtime.keep_freed_host_memory`). The allocator setting is
process-wide and cannot be undone, so each row trains in a fresh process of this script
(`--row method:loop`), one after another, and the table is printed by the parent.

Throughput counts real (non-pad) tokens per second of training, per core (`--threads`, default
1 as in a sweep worker). The bound is the standard transformer estimate over the *padded*
tokens actually computed, N = the non-embedding weights: FF 6·N FLOPs per token (forward,
activation gradients, weight gradients), LoRA 4·N (no weight gradients for the frozen body),
against the measured fp32 matmul peak on the same threads.

Then the training time of every `specs/cpu/*.yaml` before and after: each "train" run's steps
at the per-step time measured here for its method, over 2 one-thread workers (evaluation,
model loading and other kinds' runs left out: an estimate of the part this change touches).

Usage: python benchmarks/train_bound.py [--steps 60] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _readme  # benchmarks/_readme.py: --write-readme

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from ttrlab import RunConfig  # noqa: E402
from ttrlab.training import loop as training  # noqa: E402
from ttrlab.kinds.classification.experiment import load_run_data  # noqa: E402
from ttrlab.methods import METHODS  # noqa: E402
from ttrlab.models.loading import load_classifier  # noqa: E402
from ttrlab.models.runtime import Runtime  # noqa: E402

FLOPS_PER_TOKEN = {"ff": 6, "lora": 4}  # times the non-embedding weights


def matmul_peak_gflops(size: int = 1024, repeats: int = 20) -> float:
    """The best of three timings of a square fp32 matmul: this machine's FLOP limit here."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 * repeats / best / 1e9


def non_embedding_weights(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters()
               if "embeddings" not in n and "lora_" not in n and "modules_to_save" not in n)


def train_once(config: RunConfig, examples, steps: int, before: bool) -> dict:
    tokenizer, model = load_classifier(config.model, 2, config.seed)
    prepared = METHODS.get(config.method).prepare(model, config).model
    weights = non_embedding_weights(prepared)
    data = training.classification_training_set(tokenizer, examples, config.max_length)
    saved = training.adamw, Runtime.prepare_for_training
    if before:  # the loop before: torch's default AdamW, the allocator as glibc sets it
        training.adamw = lambda parameters, settings, runtime: torch.optim.AdamW(
            parameters, lr=settings.learning_rate(), weight_decay=settings.weight_decay)
        Runtime.prepare_for_training = lambda self: None
    try:
        stats = training.optimize(prepared, data, config.replace(max_steps=steps), config.seed,
                                  Runtime.resolve("cpu", config.precision))  # a CPU benchmark
    finally:
        training.adamw, Runtime.prepare_for_training = saved
    return {"seconds": stats.seconds, "real": stats.tokens, "padded": stats.padded_tokens, "weights": weights,
            "final_loss": stats.final_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--row", default=None, help="(internal) train one row in this process and print it as JSON")
    args = _readme.parse_args(parser)
    torch.set_num_threads(args.threads)
    base = RunConfig(task="sst2", train_size=2000, lr_preset="cpu", seed=0, attack="bpa", rate=0.05)
    if args.row is not None:
        method, loop = args.row.split(":")
        examples = load_run_data(base).train
        load_classifier(base.model, 2, 0)  # the disk read is not timed
        print(json.dumps(train_once(base.replace(method=method), examples, args.steps, loop == "before")))
        return

    peak = matmul_peak_gflops()
    rows = []
    for loop in ("before", "after"):
        for method in ("ff", "lora"):
            output = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--threads", str(args.threads),
                                     "--row", f"{method}:{loop}"], check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            achieved = FLOPS_PER_TOKEN[method] * result["weights"] * result["padded"] / result["seconds"] / 1e9
            rows.append((method, loop, result, achieved))

    print(f"\nSST-2 (2,000 examples), MiniLM, batch 8, {args.steps} steps, torch threads={args.threads}; "
          f"measured fp32 matmul peak {peak:.1f} GFLOP/s")
    print("of the bound: the model's own FLOPs per second (FF 6N, LoRA 4N per padded token) over that peak\n")
    print("| method | loop   |     s | real tok/s per core | vs before | GFLOP/s | of the bound | final loss |")
    print("|--------|--------|------:|--------------------:|----------:|--------:|-------------:|-----------:|")
    for method, loop, result, achieved in rows:
        tps = result["real"] / result["seconds"] / args.threads
        before = next(r for r in rows if r[0] == method and r[1] == "before")[2]
        ratio = tps / (before["real"] / before["seconds"] / args.threads)
        print(f"| {method:6s} | {loop:6s} | {result['seconds']:5.1f} | {tps:19.0f} | {ratio:8.2f}x | {achieved:7.1f} | "
              f"{100 * achieved / peak:11.0f}% | {result['final_loss']:.6f} |")

    step_seconds = {(method, loop): result["seconds"] / args.steps for method, loop, result, _ in rows}
    print(f"\nTraining time of the CPU specs' train runs at these step times ({args.threads} thread(s) per worker, "
          "2 workers; evaluation and other kinds not counted):\n")
    print("| spec | FF runs | LoRA runs | minutes before | minutes after | ratio |")
    print("|------|--------:|----------:|---------------:|--------------:|------:|")
    for name, ff, lora, before, after in spec_training_minutes(step_seconds):
        ratio = f"{before / after:.2f}x" if after else ""
        print(f"| {name} | {ff} | {lora} | {before:.0f} | {after:.0f} | {ratio} |")


def spec_training_minutes(step_seconds: dict[tuple[str, str], float], workers: int = 2) -> list[tuple]:
    """(spec, FF runs, LoRA runs, minutes before, minutes after) for every specs/cpu/*.yaml."""
    from ttrlab.sweep.spec import load_spec

    rows = []
    for path in sorted(Path(__file__).resolve().parent.parent.glob("specs/cpu/*.yaml")):
        runs = [r for r in load_spec(path).expand().runs if r.kind == "train"]
        counts = {m: sum(r.config.method == m for r in runs) for m in ("ff", "lora")}
        minutes = [sum(r.config.max_steps * step_seconds[(r.config.method, loop)] for r in runs
                       if (r.config.method, loop) in step_seconds) / workers / 60 for loop in ("before", "after")]
        rows.append((path.name, counts["ff"], counts["lora"], *minutes))
    return rows


if __name__ == "__main__":
    _readme.run(main)
