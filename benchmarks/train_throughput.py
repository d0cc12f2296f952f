"""Training throughput: ttrlab's loop vs Hugging Face `Trainer` + peft, side by side.

LoRA (r = 8, query/value) on SST-2 with MiniLM, the same 2,000 training examples, the same
number of optimizer steps, batch size and seed. Four ways to batch:
  - Trainer, padded to max_length (what the paper's official code does, there with 512)
  - Trainer, dynamic padding (DataCollatorWithPadding)
  - ttrlab, dynamic padding, random batches
  - ttrlab, dynamic padding + length bucketing (the default)
Throughput counts real (non-pad) tokens per second of training. Achieved GFLOP/s uses the
standard estimate for a transformer step over *padded* tokens (the compute actually done):
forward 2·N and activation gradients 2·N FLOPs per token for the frozen N non-embedding
weights (LoRA needs no weight gradients for them), ignoring the tiny adapters and attention
score FLOPs; the peak is a measured fp32 matmul on this machine's threads.

Usage: python benchmarks/train_throughput.py [--steps 60] [--max-length 128] [--also-512]
"""
from __future__ import annotations

import argparse
import os
import time

import _readme  # benchmarks/_readme.py: --write-readme

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from ttrlab import RunConfig  # noqa: E402
from ttrlab.kinds.classification.experiment import load_run_data  # noqa: E402
from ttrlab.methods import METHODS  # noqa: E402
from ttrlab.models.loading import load_classifier  # noqa: E402
from ttrlab.models.runtime import Runtime  # noqa: E402
from ttrlab.training.loop import classification_training_set, encode, optimize  # noqa: E402

hf_logging.set_verbosity_error()


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def fresh_lora(config):
    tokenizer, model = load_classifier(config.model, 2, config.seed)
    return tokenizer, METHODS.get("lora").prepare(model, config).model


def non_embedding_parameters(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n and "lora_" not in n)


class _CountingCollator:
    """Wraps a collator to count the real and padded tokens the Trainer consumes."""

    def __init__(self, inner):
        self.inner, self.real, self.padded = inner, 0, 0

    def __call__(self, features):
        batch = self.inner(features)
        self.real += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def run_trainer(config, examples, pad_to_max: bool, steps: int, max_length: int):
    tokenizer, model = fresh_lora(config)
    features = encode(tokenizer, examples, max_length)
    columns = {k: [f[k] for f in features] for k in features[0]}
    columns["labels"] = [e.label for e in examples]
    dataset = Dataset.from_dict(columns)
    padding = "max_length" if pad_to_max else "longest"
    collator = _CountingCollator(DataCollatorWithPadding(tokenizer, padding=padding, max_length=max_length))
    args = TrainingArguments(
        output_dir="/tmp/ttrlab-bench-trainer", max_steps=steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate(), warmup_steps=max(1, round(config.warmup_ratio * steps)), max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="linear", seed=config.seed, logging_strategy="no", save_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return seconds, collator.real, collator.padded, non_embedding_parameters(model)


def run_ttrlab(config, examples, bucketing: bool, steps: int, max_length: int):
    tokenizer, model = fresh_lora(config)
    training = classification_training_set(tokenizer, examples, max_length)
    stats = optimize(model, training, config.replace(max_steps=steps, length_bucketing=bucketing), config.seed,
                     Runtime.resolve("cpu", config.precision))  # a CPU benchmark
    return stats.seconds, stats.tokens, stats.padded_tokens, non_embedding_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--also-512", action="store_true", help="add the official code's padding to 512 (slow)")
    parser.add_argument("--threads", type=int, default=None)
    args = _readme.parse_args(parser)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = RunConfig(task="sst2", method="lora", rank=8, alpha=16, train_size=2000, lr_preset="cpu", seed=0)
    examples = load_run_data(config).train
    peak = matmul_peak_gflops()

    rows = []
    variants = [
        (f"Trainer+peft, padded to {args.max_length}", lambda: run_trainer(config, examples, True, args.steps, args.max_length)),
        ("Trainer+peft, dynamic padding", lambda: run_trainer(config, examples, False, args.steps, args.max_length)),
        ("ttrlab, dynamic padding", lambda: run_ttrlab(config, examples, False, args.steps, args.max_length)),
        ("ttrlab, dynamic + length buckets", lambda: run_ttrlab(config, examples, True, args.steps, args.max_length)),
    ]
    if args.also_512:
        variants.insert(0, ("Trainer+peft, padded to 512", lambda: run_trainer(config, examples, True, args.steps, 512)))
    fresh_lora(config)  # load once so no row pays the disk read
    for name, run in variants:
        seconds, real, padded, n_params = run()
        gflops = 4 * n_params * padded / seconds / 1e9
        rows.append((name, seconds, real, padded, real / seconds, gflops))

    padded_base = next(r for r in rows if r[0].startswith(f"Trainer+peft, padded to {args.max_length}"))
    dynamic_base = next(r for r in rows if r[0] == "Trainer+peft, dynamic padding")
    print(f"\nLoRA r=8 on SST-2 (2,000 examples), MiniLM, batch 8, {args.steps} steps, torch threads={torch.get_num_threads()}")
    print(f"measured fp32 matmul peak: {peak:.1f} GFLOP/s\n")
    header = f"| {'variant':36s} | {'s':>6s} | {'real tok':>8s} | {'pad %':>5s} | {'real tok/s':>10s} | {'vs padded':>9s} | {'vs dynamic':>10s} | {'GFLOP/s':>7s} | {'% peak':>6s} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, seconds, real, padded, tps, gflops in rows:
        print(
            f"| {name:36s} | {seconds:6.1f} | {real:8d} | {100 * (1 - real / padded):5.1f} | {tps:10.0f} | "
            f"{tps / padded_base[4]:8.2f}x | {tps / dynamic_base[4]:9.2f}x | {gflops:7.1f} | {100 * gflops / peak:5.1f}% |"
        )


if __name__ == "__main__":
    _readme.run(main)
