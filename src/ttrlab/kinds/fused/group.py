"""Train K LoRA classification runs over one frozen base model, then evaluate and record each.

    configs (same fusion key) → each run's data, attack and training set, as alone
      → one base model; per run a named peft LoRA adapter (its own A init) and a copy of the
        head (its own head seed), all through peft's multi-adapter layers
      → `optimize_group`: every step the K runs' next batches are packed token by token
        (`routing.PackedStep`) and go through the base in one forward and one backward pass;
        peft's mixed-batch forward sends each run's tokens through its own adapter and each
        run's sequences through its own head; each run's loss is the mean over its own rows,
        and it has its own AdamW, schedule and clipping
      → per run: its adapter made active, the kind's own evaluation, the same result document
        as alone plus `train.fused_group` (its members and the group's training seconds)

Each run's state is made (`pipeline.start`) and recorded (`pipeline.finish`) as alone; only the
model, the method's preparation and the loop are the group's own (`fused_model`, `optimize_group`).

A run computes what it computes alone up to float round-off (`routing` gives it its own
attention and its own dropout draws), so its result does not depend on its group.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ttrlab.kinds.fused.routing import ATTENTION, PackedStep, RoutedDropout, routed_attention
from ttrlab.methods.base import PreparedModel
from ttrlab.kinds.pipeline import Experiment, RunState, finish, load_model, start
from ttrlab.kinds.pipeline import run as run_alone
from ttrlab.models.runtime import Runtime
from ttrlab.core.streams import rng_for
from ttrlab.training.loop import (
    TrainingSet,
    TrainStats,
    adamw,
    apply_update,
    endless_batches,
    linear_schedule,
)

ADAPTER_PREFIX = "run"


class CannotFuse(Exception):
    """The model lacks what fusing needs (e.g. a head peft cannot split by rows)."""


def adapter_name(k: int) -> str:
    return f"{ADAPTER_PREFIX}{k}"


@dataclass
class FusedAdapter:
    name: str  # the peft adapter of one run
    parameters: list[torch.nn.Parameter]  # its LoRA matrices and its head copy
    details: dict[str, Any]  # the method record (`lora.init_details`)


@dataclass
class FusedRun:
    state: RunState  # the run's own state, as alone (its data, attack, runtime; then its model and record)
    training: TrainingSet
    adapter: FusedAdapter

    @property
    def config(self):
        return self.state.config


def run_group(experiment: Experiment, configs: list, progress=None) -> list[dict[str, Any]]:
    """The result documents of `configs`, trained together. A model that cannot be fused trains
    each run alone instead (same results, no speed-up)."""
    for config in configs:
        config.validate()
    states = [start(experiment, config) for config in configs]  # each run's data and attack, as alone
    runtime = states[0].runtime  # the same device and precision for all (the fusion key)
    if progress is not None:
        progress("load", model=configs[0].model)
    base = load_model(experiment, states[0])
    try:
        model, adapters = fused_model(base, configs, runtime)
    except CannotFuse:
        return [run_alone(experiment, s.config, progress=progress, data=s.data).to_dict() for s in states]
    for state in states:
        state.tokenizer = states[0].tokenizer
    runs = [FusedRun(state, experiment.training_set(state), adapter) for state, adapter in zip(states, adapters)]

    stats = optimize_group(model, runs, runtime, progress)
    group = {"size": len(runs), "members": [r.config.run_key() for r in runs],
             "seconds": round(sum(s.seconds for s in stats), 3)}
    if progress is not None:
        progress("evaluate")
    documents = []
    trainable = {id(p) for r in runs for p in r.adapter.parameters}
    everything = sum(p.numel() for p in model.parameters())
    others = sum(p.numel() for p in model.parameters() if id(p) in trainable)
    for r, run_stats in zip(runs, stats):
        model.set_adapter(r.adapter.name)
        own = sum(p.numel() for p in r.adapter.parameters)  # as alone: the base, its adapter, its head copy
        r.state.prepared = PreparedModel(model, own, everything - others + own, r.adapter.details)
        r.state.train = {**run_stats.as_dict(), "fused_group": group}
        documents.append(finish(experiment, r.state).to_dict())
    return documents


def fused_model(base, configs: list, runtime: Runtime):
    """`base` (a BERT-style sequence classifier) with one peft LoRA adapter and head copy per
    config, each drawn from that run's seed, its attention and dropouts routed (`routing`);
    (the peft model on the runtime's device, the adapters in config order). CannotFuse if the
    model lacks what fusing needs."""
    from peft import get_peft_model
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import (
        ALL_MASK_ATTENTION_FUNCTIONS,
        create_bidirectional_mask,
    )
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from ttrlab.methods.lora import LoRASettings, init_details, lora_config
    from ttrlab.models.loading import classification_head, draw_head_

    implementation = base.config._attn_implementation
    if implementation not in ALL_ATTENTION_FUNCTIONS.valid_keys() or implementation not in ALL_MASK_ATTENTION_FUNCTIONS.valid_keys():
        raise CannotFuse(f"attention implementation {implementation!r} is not routable")
    heads = classification_head(base)
    if len(heads) != 1 or not isinstance(getattr(base, "classifier", getattr(base, "score", None)), torch.nn.Linear):
        raise CannotFuse("the head is not one Linear layer (peft splits only those by rows)")
    std = getattr(base.config, "initializer_range", 0.02)

    model = None
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        for k, config in enumerate(configs):
            lora = lora_config(LoRASettings.of(config), config.TASK_TYPE)
            if model is None:
                model = get_peft_model(base, lora, adapter_name=adapter_name(k))
            else:
                model.add_adapter(adapter_name(k), lora)
    hf_model = model.base_model.model

    def run_mask(run, query):  # the mask transformers builds for this run's batch alone
        embeddings = torch.empty((run.rows, run.length, hf_model.config.hidden_size), dtype=hf_model.dtype, device=query.device)
        return create_bidirectional_mask(hf_model.config, embeddings, run.attention_mask.to(query.device).long())

    AttentionInterface.register(ATTENTION, routed_attention(ALL_ATTENTION_FUNCTIONS[implementation], run_mask))
    AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS[implementation])
    hf_model.set_attn_implementation(ATTENTION)

    for module_name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is torch.nn.Dropout:
                run = _adapter_index(child_name) if module_name.endswith("lora_dropout") else None
                setattr(module, child_name, RoutedDropout.replacing(child, run))

    _BertStyle(model)  # CannotFuse unless its forward can be split as packed tokens
    adapters = []
    named = list(model.named_parameters())
    for k, config in enumerate(configs):
        name = adapter_name(k)
        details = init_details(model, LoRASettings.of(config), config.seed, name)
        head = [m for m in model.get_submodule(_head_path(model)).modules_to_save[name].modules()
                if isinstance(m, torch.nn.Linear)]
        draw_head_(head, config.seed, std)
        adapters.append(FusedAdapter(name, [p for n, p in named if f".{name}." in n], details))
    own = {id(p) for a in adapters for p in a.parameters}
    for _, p in named:
        p.requires_grad_(id(p) in own)
    return model.to(runtime.device), adapters


def _adapter_index(name: str) -> int:
    return int(name.removeprefix(ADAPTER_PREFIX))


def _head_path(model) -> str:
    for path in ("base_model.model.classifier", "base_model.model.score"):
        try:
            model.get_submodule(path)
            return path
        except AttributeError:
            continue
    raise CannotFuse("no classifier or score head")


def optimize_group(model, runs: list[FusedRun], runtime: Runtime, progress=None) -> list[TrainStats]:
    """`training.optimize` for K runs at once: each run's own batches, schedule, clipping and
    AdamW, with one forward and one backward pass over the packed tokens of all K batches."""
    runtime.prepare_for_training()
    settings = [r.config for r in runs]
    max_steps = settings[0].max_steps  # equal within a group (the fusion key)
    orders = [endless_batches([len(f["input_ids"]) for f in r.training.features], s.batch_size,
                              rng_for(s.seed, "batch_order"), s.length_bucketing) for r, s in zip(runs, settings)]
    optimizers = [adamw(r.adapter.parameters, s, runtime) for r, s in zip(runs, settings)]
    schedulers = [linear_schedule(o, s) for o, s in zip(optimizers, settings)]
    scalers = [runtime.grad_scaler() for _ in runs]  # fp16: each run scales its own loss
    step_layout = PackedStep.seeded([s.seed for s in settings], runtime.device)
    classifier = _BertStyle(model)
    recent: list[list[float]] = [[] for _ in runs]
    tokens = [0] * len(runs)
    padded = [0] * len(runs)
    model.train()
    started = time.perf_counter()
    for step in range(1, max_steps + 1):
        batches = [r.training.make_batch(next(order)) for r, order in zip(runs, orders)]
        packed = runtime.to_device(step_layout.pack(batches))
        labels = packed.pop("labels")
        token_adapters = [r.adapter.name for r, run in zip(runs, step_layout.runs) for _ in range(len(run.real))]
        row_adapters = [r.adapter.name for r, run in zip(runs, step_layout.runs) for _ in range(run.rows)]
        with step_layout.active(), _adapter_rows(model, token_adapters), runtime.autocast():
            logits = classifier(packed, row_adapters)
        losses = [torch.nn.functional.cross_entropy(logits[run.sequences].float(), labels[run.sequences])
                  for run in step_layout.runs]
        scaled = [loss if scaler is None else scaler.scale(loss) for loss, scaler in zip(losses, scalers)]
        torch.stack(scaled).sum().backward()  # each run's parameters get only its own loss's gradient
        for k, (run, optimizer, scheduler, scaler) in enumerate(zip(runs, optimizers, schedulers, scalers)):
            apply_update(run.adapter.parameters, optimizer, scheduler, scaler, settings[k].max_grad_norm)
            tokens[k] += int(batches[k]["attention_mask"].sum())
            padded[k] += batches[k]["attention_mask"].numel()
            recent[k] = (recent[k] + [losses[k].item()])[-50:]
        if progress is not None:
            progress("step", step=step, total=max_steps, loss=float(np.mean([r[-1] for r in recent])))
    model.eval()
    share = (time.perf_counter() - started) / len(runs)  # each run's share of the group's time
    return [TrainStats(max_steps, share, tokens[k], padded[k],
                       round(float(np.mean(recent[k])), 6) if recent[k] else None) for k in range(len(runs))]


class _BertStyle:
    """The forward pass of a BERT-style sequence classifier (backbone → pooler on the first
    token → dropout → classifier), over packed tokens: the backbone runs without its pooler on
    the (N, 1) column, the pooler and head on each sequence's first token only, the head through
    peft's per-row adapter copies."""

    def __init__(self, peft_model):
        self.hf = peft_model.base_model.model
        self.backbone = getattr(self.hf, self.hf.base_model_prefix, None)
        if (self.backbone is None or getattr(self.backbone, "pooler", None) is None
                or not isinstance(getattr(self.hf, "dropout", None), torch.nn.Dropout)
                or not hasattr(self.hf, "classifier")):
            raise CannotFuse(f"{type(self.hf).__name__} is not a BERT-style classifier (backbone, pooler, dropout, classifier)")

    def __call__(self, packed: dict[str, torch.Tensor], row_adapters: list[str]) -> torch.Tensor:
        first_tokens = packed.pop("first_tokens")
        pooler, self.backbone.pooler = self.backbone.pooler, None
        try:
            hidden = self.backbone(**packed).last_hidden_state  # (N, 1, hidden)
        finally:
            self.backbone.pooler = pooler
        pooled = pooler(hidden[first_tokens])  # (sequences, 1, hidden) → (sequences, hidden)
        return self.hf.classifier(self.hf.dropout(pooled), adapter_names=row_adapters)


class _adapter_rows:
    """Tell every peft LoRA layer which adapter each packed token goes through: the pre-forward
    hook peft itself installs for `adapter_names` (which it allows at inference only)."""

    def __init__(self, model, names: list[str]):
        self.model, self.names, self.handles = model, names, []

    def __enter__(self):
        from peft.tuners.lora import LoraLayer

        def inject(module, args, kwargs):
            kwargs["adapter_names"] = self.names
            return args, kwargs

        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                self.handles.append(module.register_forward_pre_hook(inject, with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []
