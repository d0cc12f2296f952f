"""Training throughput at the paper's scale on one accelerator: BERT-large (built from its config
with random weights, so nothing is downloaded), batch 8 × 512 tokens, FF and LoRA (r = 8 on
query/value, the paper's main setting), fp32 and bf16, through ttrlab's own training loop
(`ttrlab.training.optimize` on a `Runtime`), side by side in one process.

Prints steps/s, real tokens/s, peak accelerator memory and the ratio against fp32 of the same
method. On a CPU-only machine use `--model tiny --device cpu` to check the script itself.

Usage: python benchmarks/gpu_throughput.py [--steps 200] [--warmup 10] [--device cuda]
       [--precisions fp32,bf16] [--methods ff,lora] [--model bert-large|tiny]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from ttrlab import RunConfig  # noqa: E402
from ttrlab.methods import METHODS  # noqa: E402
from ttrlab.runtime import Runtime  # noqa: E402
from ttrlab.training import TrainingSet, optimize  # noqa: E402

MODELS = {
    # bert-large-uncased's config.json (the paper's model)
    "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       vocab_size=30522, max_position_embeddings=512),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 vocab_size=30522, max_position_embeddings=512),
}


def random_training_set(n: int, length: int, vocab: int, seed: int) -> TrainingSet:
    """`n` full-length random sentences with random labels (the speed does not depend on content)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (n, length), generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    features = [{"input_ids": row.tolist(), "attention_mask": [1] * length} for row in ids]

    def make_batch(positions: list[int]) -> dict[str, torch.Tensor]:
        return {"input_ids": ids[positions], "attention_mask": torch.ones(len(positions), length, dtype=torch.long),
                "labels": labels[positions]}

    return TrainingSet(features, make_batch)


def measure(method: str, precision: str, args) -> dict:
    runtime = Runtime.resolve(args.device, precision)
    config = RunConfig(method=method, rank=8, alpha=16, lr=1e-5, batch_size=args.batch_size,
                       max_steps=args.warmup + args.steps, precision=precision, device=args.device)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**MODELS[args.model], num_labels=2))
    prepared = METHODS.get(method).prepare(model.to(runtime.device), config)
    training = random_training_set(args.batch_size * 4, args.seq_len, MODELS[args.model]["vocab_size"], 0)
    if runtime.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    optimize(prepared.model, training, config.replace(max_steps=args.warmup), 0, runtime)  # compile/caches warm
    _sync(runtime)
    started = time.perf_counter()
    stats = optimize(prepared.model, training, config.replace(max_steps=args.steps), 0, runtime)
    _sync(runtime)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(runtime.device) / 2**30 if runtime.type == "cuda" else float("nan")
    return {"method": method, "precision": precision, "steps_per_s": args.steps / seconds,
            "tokens_per_s": stats.tokens / seconds, "peak_gib": peak, "trainable": prepared.trainable_parameters,
            "final_loss": stats.final_loss, "device": runtime.device_name()}


def _sync(runtime: Runtime) -> None:
    if runtime.type == "cuda":
        torch.cuda.synchronize(runtime.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="bert-large")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--methods", default="ff,lora")
    args = parser.parse_args()
    rows = [measure(m, p, args) for m in args.methods.split(",") for p in args.precisions.split(",")]
    print(f"\n{args.model}, batch {args.batch_size} x {args.seq_len} tokens, {args.steps} steps after {args.warmup} "
          f"warm-up, on {rows[0]['device']}\n")
    print("| method | precision | trainable params | steps/s | tokens/s | vs fp32 | peak GiB | final loss |")
    print("|---|---|---|---|---|---|---|---|")
    fp32 = {r["method"]: r for r in rows if r["precision"] == "fp32"}
    for r in rows:
        base = fp32.get(r["method"], r)
        print(f"| {r['method']} | {r['precision']} | {r['trainable']:,} | {r['steps_per_s']:.2f} | {r['tokens_per_s']:,.0f} | "
              f"{r['steps_per_s'] / base['steps_per_s']:.2f}x | {r['peak_gib']:.1f} | {r['final_loss']:.4f} |")


if __name__ == "__main__":
    main()
