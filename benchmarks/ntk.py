"""Benchmark: ttrlab's empirical NTK vs the naive per-sample gradient loop, side by side.

Three engines on the same batch in one process: ttrlab's default (`engine="auto"`: the layer-wise
kernel, no per-sample Jacobian), its chunked torch.func Jacobian engine, and the naive loop. One
small warm-up call per engine first, so one-time allocator and dispatch costs are nobody's.

MiniLM-L6 on SST-2 sentences (seeded sample, max_length 64), FF (all 22.7M parameters) and LoRA
(r = 8 on query/value + head), N = 16, 32, 64. For each: wall time and peak RSS increase over the
computation (Linux VmHWM, reset before each measurement), and the largest difference between the
two kernels (relative to the largest entry).

The naive loop stores all N·O gradients (memory N·O·P: 11.6 GB for FF at N = 64), so for FF it
runs only up to --naive-max-ff (default 32); larger N are *extrapolated* (time: per-sample loop
linear in N plus the Gram product quadratic in N, fitted on the measured points; memory: linear
in N) and labelled as such.

    python benchmarks/ntk.py [--n 16,32,64] [--threads 1] [--naive-max-ff 32] [--out results/theory/ntk_benchmark.json]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

import _readme  # benchmarks/_readme.py: --write-readme

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ttrlab.kinds.classification.config import RunConfig  # noqa: E402
from ttrlab.data import TASKS, load_split, seeded_subset  # noqa: E402
from ttrlab.methods import METHODS  # noqa: E402
from ttrlab.models.loading import load_classifier  # noqa: E402
from ttrlab.theory.ntk import empirical_ntk, naive_ntk  # noqa: E402
from ttrlab.training.loop import collate  # noqa: E402


def prepared(method: str):
    tokenizer, model = load_classifier("minilm", 2, 0)
    model = METHODS.get(method).prepare(model, RunConfig(method=method, rank=8)).model
    model.eval()
    return tokenizer, model


def measure(compute, model, batch, **kwargs):
    gc.collect()
    return compute(model, batch, **kwargs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="16,32,64")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--naive-max-ff", type=int, default=32)
    parser.add_argument("--methods", default="lora,ff")
    parser.add_argument("--max-jacobian-mb", type=int, default=1024)
    parser.add_argument("--out", default="results/theory/ntk_benchmark.json")
    args = _readme.parse_args(parser, argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sizes = [int(x) for x in args.n.split(",")]
    # default_rng(0): the sample seeded_subset(..., seed=0) drew before it took a generator
    examples = seeded_subset(load_split(TASKS.get("sst2"), "train"), max(sizes), np.random.default_rng(0))

    rows = []
    for method in args.methods.split(","):
        tokenizer, model = prepared(method)
        warm = collate(tokenizer, examples[:4], 64)
        for engine in (lambda m, b: empirical_ntk(m, b), lambda m, b: empirical_ntk(m, b, engine="jacobian"), naive_ntk):
            engine(model, warm)
        for n in sizes:
            batch = collate(tokenizer, examples[:n], 64)
            fast = measure(empirical_ntk, model, batch, max_jacobian_bytes=args.max_jacobian_mb * 2**20)
            jac = measure(empirical_ntk, model, batch, engine="jacobian", max_jacobian_bytes=args.max_jacobian_mb * 2**20)
            row = {"method": method, "n": n, "tokens_padded": int(batch["input_ids"].numel()),
                   "tokens_real": int(batch["attention_mask"].sum()),
                   "ttrlab_s": fast.seconds, "ttrlab_peak_mb": (fast.peak_rss_increase_bytes or 0) / 2**20,
                   "jacobian_s": jac.seconds, "jacobian_peak_mb": (jac.peak_rss_increase_bytes or 0) / 2**20,
                   "chunks": jac.chunks,
                   "jacobian_rel_diff": float((fast.kernel - jac.kernel).abs().max() / jac.kernel.abs().max())}
            del jac
            if method == "lora" or n <= args.naive_max_ff:
                slow = measure(naive_ntk, model, batch)
                row.update(naive_s=slow.seconds, naive_peak_mb=(slow.peak_rss_increase_bytes or 0) / 2**20,
                           naive_extrapolated=False,
                           max_rel_diff=float((fast.kernel - slow.kernel).abs().max() / slow.kernel.abs().max()))
                del slow
            rows.append(row)
            del fast
            print(json.dumps(row), file=sys.stderr, flush=True)
        del model

    # extrapolate the naive loop where it was not run: its per-sample loop is linear in N and its
    # Gram product quadratic, so scaling the largest measured N linearly is a lower bound on
    # time; its memory (all N·O gradients) is linear in N.
    for method in {r["method"] for r in rows}:
        measured = [r for r in rows if r["method"] == method and "naive_s" in r]
        if not measured:
            continue
        last = max(measured, key=lambda m: m["n"])
        for r in rows:
            if r["method"] == method and "naive_s" not in r:
                factor = r["n"] / last["n"]
                r.update(naive_s=last["naive_s"] * factor, naive_peak_mb=last["naive_peak_mb"] * factor,
                         naive_extrapolated=True, max_rel_diff=None)

    header = (f"{'method':6s} {'N':>4s} {'ttrlab s':>9s} {'jacobian s':>10s} {'naive s':>9s} {'vs naive':>8s} "
              f"{'vs jacobian':>11s} {'ttrlab MB':>10s} {'jacobian MB':>11s} {'naive MB':>10s} {'max rel diff':>12s}")
    print(f"empirical NTK on MiniLM-L6, SST-2, max_length 64, {args.threads} thread(s), "
          f"budget {args.max_jacobian_mb} MB; ttrlab = engine 'auto' (layer-wise)")
    print(header)
    print("-" * len(header))
    for r in rows:
        star = "*" if r.get("naive_extrapolated") else " "
        diff = "–" if r.get("max_rel_diff") is None else f"{r['max_rel_diff']:.1e}"
        print(f"{r['method']:6s} {r['n']:4d} {r['ttrlab_s']:9.2f} {r['jacobian_s']:10.2f} {r['naive_s']:8.2f}{star} "
              f"{r['naive_s'] / r['ttrlab_s']:7.2f}x {r['jacobian_s'] / r['ttrlab_s']:10.2f}x "
              f"{r['ttrlab_peak_mb']:10.0f} {r['jacobian_peak_mb']:11.0f} {r['naive_peak_mb']:9.0f}{star} {diff:>12s}")
    if any(r.get("naive_extrapolated") for r in rows):
        print("* extrapolated linearly from the largest measured N (a lower bound on time; not run: memory N·O·P)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_readme.run(main))
