"""Fused multi-adapter LoRA training (`ttrlab.kinds.fused`) vs the same K runs one after another,
side by side in one process.

K LoRA runs (r = 8 on query/value, SST-2 with 2,000 examples, MiniLM, batch 8, the same steps)
that differ in seed and poisoning rate, as a sweep's runs do: trained as one fused group over
one base, and trained alone one after another. Training seconds only (data and model loading
and evaluation are the same work either way); every run trains the same number of steps both
ways, and the final losses must agree to round-off (the table says if they do not).

Usage: python benchmarks/fused_lora.py [--steps 30] [--threads 2] [--sizes 1,2,4,8]
"""
from __future__ import annotations

import argparse
import os

import _readme  # benchmarks/_readme.py: --write-readme

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from ttrlab import RunConfig  # noqa: E402
from ttrlab.kinds.classification.experiment import CLASSIFICATION  # noqa: E402
from ttrlab.kinds.fused import run_group  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="1,2,4,8")
    args = _readme.parse_args(parser)
    torch.set_num_threads(args.threads)
    sizes = [int(k) for k in args.sizes.split(",")]
    rates = (0.0, 0.01, 0.05, 0.1)
    configs = [RunConfig(task="sst2", method="lora", train_size=2000, eval_size=64, lr_preset="cpu", seed=k // 4,
                         attack="bpa", rate=rates[k % 4], max_steps=args.steps) for k in range(max(sizes))]
    CLASSIFICATION.run(configs[0].replace(max_steps=1))  # model loaded and warm before any row

    print(f"\nLoRA r=8, SST-2 (2,000 examples), MiniLM, batch 8, {args.steps} steps per run, torch threads={args.threads}\n")
    print("| K | fused s | alone s (sum) | fused speed-up | real tok/s fused | real tok/s alone | final losses equal |")
    print("|--:|--------:|--------------:|---------------:|-----------------:|-----------------:|:------------------:|")
    for k in sizes:
        group = configs[:k]
        fused = run_group(CLASSIFICATION, group)
        alone = [CLASSIFICATION.run(config) for config in group]
        fused_s = sum(d["train"]["seconds"] for d in fused)  # each run records its share of the group's time
        alone_s = sum(d["train"]["seconds"] for d in alone)
        tokens = sum(d["train"]["real_tokens"] for d in alone)
        equal = all(abs(f["train"]["final_loss"] - a["train"]["final_loss"]) <= 1e-5 * abs(a["train"]["final_loss"])
                    for f, a in zip(fused, alone))
        print(f"| {k} | {fused_s:7.1f} | {alone_s:13.1f} | {alone_s / fused_s:13.2f}x | {tokens / fused_s:16.0f} | "
              f"{tokens / alone_s:16.0f} | {'yes' if equal else 'NO'} |")


if __name__ == "__main__":
    _readme.run(main)
