"""Training throughput at the paper's scale on one accelerator: BERT-large (built from its config
with random weights, so nothing is downloaded), batch 8 at 512 tokens and at SST-2 lengths
(dynamic padding, 8-45 tokens a sentence), FF and LoRA (r = 8 on query/value, the paper's main
setting), fp32 and bf16, through ttrlab's own training loop (`ttrlab.training.loop.optimize` on a
`Runtime`), and fused groups of K LoRA runs (`ttrlab.kinds.fused`, K = 1, 4, 8), side by side in
one process; then the GPU-hours each `specs/paper/*.yaml` would take at those rates.

Prints steps/s, real tokens/s, peak accelerator memory and the ratio against fp32 of the same
method (fused rows: against one run alone). On a CPU-only machine use `--model tiny --device
cpu` to check the script itself.

Usage: python benchmarks/gpu_throughput.py [--steps 200] [--warmup 10] [--device cuda]
       [--precisions fp32,bf16] [--methods ff,lora] [--model bert-large|tiny] [--fused 1,4,8]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import _readme  # benchmarks/_readme.py: --write-readme

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from ttrlab import RunConfig  # noqa: E402
from ttrlab.methods import METHODS  # noqa: E402
from ttrlab.models.runtime import Runtime  # noqa: E402
from ttrlab.training.loop import TrainingSet, optimize  # noqa: E402

MODELS = {
    # bert-large-uncased's config.json (the paper's model)
    "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       vocab_size=30522, max_position_embeddings=512),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 vocab_size=30522, max_position_embeddings=512),
}


SST2_LENGTHS = (8, 45)  # MiniLM/BERT tokens per SST-2 training sentence: most lie in this range


def random_training_set(n: int, length: int | str, vocab: int, seed: int) -> TrainingSet:
    """`n` random sentences with random labels (the speed does not depend on content): all of
    `length` tokens, or for "sst2" of random lengths in SST2_LENGTHS, padded per batch."""
    generator = torch.Generator().manual_seed(seed)
    longest = SST2_LENGTHS[1] if length == "sst2" else int(length)
    ids = torch.randint(1000, vocab, (n, longest), generator=generator)
    lengths = (torch.randint(SST2_LENGTHS[0], SST2_LENGTHS[1] + 1, (n,), generator=generator) if length == "sst2"
               else torch.full((n,), longest))
    labels = torch.randint(0, 2, (n,), generator=generator)
    features = [{"input_ids": row[:t].tolist(), "attention_mask": [1] * int(t)} for row, t in zip(ids, lengths)]

    def make_batch(positions: list[int]) -> dict[str, torch.Tensor]:
        width = int(lengths[positions].max())
        mask = (torch.arange(width) < lengths[positions, None]).long()
        return {"input_ids": ids[positions, :width] * mask, "attention_mask": mask, "labels": labels[positions]}

    return TrainingSet(features, make_batch)


def _bert(args):
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**MODELS[args.model], num_labels=2))


def measure(method: str, precision: str, seq_len, args) -> dict:
    runtime = Runtime.resolve(args.device, precision)
    config = RunConfig(method=method, rank=8, alpha=16, lr=1e-5, batch_size=args.batch_size,
                       max_steps=args.warmup + args.steps, precision=precision, device=args.device)
    prepared = METHODS.get(method).prepare(_bert(args).to(runtime.device), config)
    training = random_training_set(args.batch_size * 4, seq_len, MODELS[args.model]["vocab_size"], 0)
    if runtime.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    optimize(prepared.model, training, config.replace(max_steps=args.warmup), 0, runtime)  # compile/caches warm
    _sync(runtime)
    started = time.perf_counter()
    stats = optimize(prepared.model, training, config.replace(max_steps=args.steps), 0, runtime)
    _sync(runtime)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(runtime.device) / 2**30 if runtime.type == "cuda" else float("nan")
    return {"method": method, "precision": precision, "seq_len": seq_len, "runs": 1, "steps_per_s": args.steps / seconds,
            "tokens_per_s": stats.tokens / seconds, "peak_gib": peak, "trainable": prepared.trainable_parameters,
            "final_loss": stats.final_loss, "device": runtime.device_name()}


def measure_fused(k: int, precision: str, seq_len, args) -> dict:
    """K LoRA runs (seeds 0..K-1) as one fused group: steps/s of the group, tokens/s of all K."""
    from ttrlab.kinds.fused.group import FusedRun, fused_model, optimize_group
    from ttrlab.kinds.pipeline import RunState

    runtime = Runtime.resolve(args.device, precision)
    configs = [RunConfig(method="lora", rank=8, alpha=16, lr=1e-5, batch_size=args.batch_size, seed=seed,
                         max_steps=args.warmup, precision=precision, device=args.device) for seed in range(k)]
    model, adapters = fused_model(_bert(args), configs, runtime)
    trainings = [random_training_set(args.batch_size * 4, seq_len, MODELS[args.model]["vocab_size"], seed)
                 for seed in range(k)]
    runs = [FusedRun(RunState(c, runtime, None, None), t, a) for c, t, a in zip(configs, trainings, adapters)]
    if runtime.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    optimize_group(model, runs, runtime)  # warm-up
    for run in runs:
        run.state.config = run.config.replace(max_steps=args.steps)
    _sync(runtime)
    started = time.perf_counter()
    stats = optimize_group(model, runs, runtime)
    _sync(runtime)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(runtime.device) / 2**30 if runtime.type == "cuda" else float("nan")
    return {"method": f"lora fused K={k}", "precision": precision, "seq_len": seq_len, "runs": k,
            "steps_per_s": args.steps / seconds, "tokens_per_s": sum(s.tokens for s in stats) / seconds,
            "peak_gib": peak, "trainable": len(adapters[0].parameters) and sum(p.numel() for p in adapters[0].parameters),
            "final_loss": float(sum(s.final_loss for s in stats) / k), "device": runtime.device_name()}


def paper_spec_hours(rows: list[dict]) -> list[tuple[str, int, float, float]]:
    """(spec, training runs, GPU-hours at 512 tokens, GPU-hours at SST-2 lengths): every run's
    steps at the measured bf16 rate of its method (LoRA runs fused 8 at a time where measured)."""
    from ttrlab.sweep.spec import load_spec

    def rate(method: str, seq_len) -> float | None:
        fused = [r for r in rows if r["method"] == "lora fused K=8" and r["seq_len"] == seq_len and r["precision"] == "bf16"]
        if method == "lora" and fused:
            return fused[0]["steps_per_s"] * 8  # run-steps per second
        alone = [r for r in rows if r["method"] == method and r["seq_len"] == seq_len and r["precision"] == "bf16"]
        return alone[0]["steps_per_s"] if alone else None

    out = []
    for path in sorted(Path(__file__).resolve().parent.parent.glob("specs/paper/*.yaml")):
        runs = [r for r in load_spec(path).expand().runs if getattr(r.config, "max_steps", None) and r.kind == "train"]
        hours = []
        for seq_len in (512, "sst2"):
            rates = [rate(r.config.method, seq_len) for r in runs]
            hours.append(sum(r.config.max_steps / v for r, v in zip(runs, rates) if v) / 3600 if all(rates) else float("nan"))
        out.append((path.name, len(runs), *hours))
    return out


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
    parser.add_argument("--seq-lens", default="512,sst2", help="512 (every sentence full) and/or sst2 (8-45 tokens)")
    parser.add_argument("--fused", default="1,4,8", help="fused LoRA group sizes K ('' for none)")
    args = _readme.parse_args(parser)
    seq_lens = [s if s == "sst2" else int(s) for s in args.seq_lens.split(",")]
    rows = [measure(m, p, t, args) for t in seq_lens for m in args.methods.split(",") for p in args.precisions.split(",")]
    rows += [measure_fused(int(k), p, t, args) for t in seq_lens for k in filter(None, args.fused.split(","))
             for p in args.precisions.split(",")]
    print(f"\n{args.model}, batch {args.batch_size}, {args.steps} steps after {args.warmup} warm-up, on {rows[0]['device']}\n")
    print("| tokens | method | precision | trainable params (one run) | steps/s | tokens/s | vs fp32 | vs one run | peak GiB | final loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fp32 = next((b for b in rows if b["method"] == r["method"] and b["seq_len"] == r["seq_len"] and b["precision"] == "fp32"), r)
        one = next((b for b in rows if b["method"] == "lora" and b["seq_len"] == r["seq_len"] and b["precision"] == r["precision"]), None)
        versus_one = f"{r['tokens_per_s'] / one['tokens_per_s']:.2f}x" if one and r["runs"] > 1 else ""
        print(f"| {r['seq_len']} | {r['method']} | {r['precision']} | {r['trainable']:,} | {r['steps_per_s']:.2f} | "
              f"{r['tokens_per_s']:,.0f} | {r['steps_per_s'] / fp32['steps_per_s']:.2f}x | {versus_one} | "
              f"{r['peak_gib']:.1f} | {r['final_loss']:.4f} |")
    print("\nGPU-hours of every specs/paper/*.yaml at these bf16 rates (one GPU; LoRA fused 8 at a time where measured):\n")
    print("| spec | training runs | hours at 512 tokens | hours at SST-2 lengths |")
    print("|---|---|---|---|")
    for name, count, long, short in paper_spec_hours(rows):
        print(f"| {name} | {count} | {long:.1f} | {short:.1f} |")


if __name__ == "__main__":
    _readme.run(main)
