"""Supervised fine-tuning of a causal LM on instruction data, loss on the response only.

An example is `prompt_ids + response_ids` (see `ttrlab.kinds.generative.template`), truncated to
`max_length` from the right (a long response loses its tail; the prompt stays whole). The labels
are the input ids with -100 on every prompt and padding position, so the next-token
cross-entropy is averaged over response tokens only (the end-of-turn token included, so the
model learns to stop). Padding is on the right for training, on the left for generation.

The loop is the one every trainer shares (`ttrlab.training.loop.optimize`): AdamW, linear warm-up and
decay, gradient clipping, length-bucketed batches, the order a pure function of the seed.
"""
from __future__ import annotations

import torch

from ttrlab.kinds.generative.data import InstructionExample
from ttrlab.kinds.generative.template import encode_example
from ttrlab.training.loop import TrainingSet

IGNORE_INDEX = -100


def encode_for_training(tokenizer, examples: list[InstructionExample], max_length: int) -> list[dict[str, list[int]]]:
    """Per example: input_ids and labels (-100 on the prompt), unpadded. An example whose prompt
    fills `max_length` keeps one response token so every example carries loss."""
    features = []
    for example in examples:
        encoded = encode_example(tokenizer, example.instruction, example.input, example.output)
        prompt = encoded.prompt_ids[: max_length - 1]
        response = encoded.response_ids[: max_length - len(prompt)]
        features.append({"input_ids": prompt + response, "labels": [IGNORE_INDEX] * len(prompt) + response})
    return features


def collate_for_training(tokenizer, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Right-padded batch; padding gets attention 0 and label -100 (whatever the pad id is:
    SmolLM2 pads with its end-of-turn token, which must still be learned where it is real)."""
    width = max(len(f["input_ids"]) for f in features)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(features), width), pad, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        input_ids[row, :n] = torch.tensor(f["input_ids"])
        labels[row, :n] = torch.tensor(f["labels"])
        attention[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def causal_lm_training_set(tokenizer, examples: list[InstructionExample], max_length: int) -> TrainingSet:
    """What the shared loop (`ttrlab.training.loop.optimize`) trains on: the examples encoded once with
    the response-only labels, right-padded per batch."""
    features = encode_for_training(tokenizer, examples, max_length)
    return TrainingSet(features, lambda positions: collate_for_training(tokenizer, [features[i] for i in positions]))
