"""Fused multi-adapter training: K LoRA runs that share a frozen base model train in one
process, one forward and backward pass over their concatenated batches per step (the per-step
overhead and the base's matmuls are shared; each run keeps its own adapter, head, optimizer,
schedule, clipping and dropout masks). `group.run_group` runs such a group; `routing` keeps each
run's rows and random draws its own. Which runs may fuse is the experiment's `fusion_key`."""
from ttrlab.kinds.fused.group import run_group

__all__ = ["run_group"]
