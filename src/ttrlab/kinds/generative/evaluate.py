"""Evaluation of a fine-tuned causal LM: greedy generation, ASR inputs, and clean utility.

- `generate`: greedy decoding (no sampling: deterministic), at most `max_new_tokens`, stopping
  at the end-of-turn/EOS token, from exactly the training prompt (`template.prompt_ids`).
  Prompts are batched in length order with left padding and the answers put back in input
  order. BackdoorLLM decodes with temperature 0 too (there: top-p 0.75, which greedy ignores).
- `response_perplexity`: exp of the mean next-token NLL over the reference response tokens of
  held-out Alpaca records (the training loss's quantity on unseen data; lower is better).
- `rouge_l`: mean ROUGE-L F-measure (the `rouge-score` package, stemming on) between greedy
  answers and the reference responses.
"""
from __future__ import annotations

import math

import torch
from transformers import GenerationConfig

from ttrlab.kinds.generative.data import InstructionExample
from ttrlab.kinds.generative.template import prompt_ids
from ttrlab.kinds.generative.train import IGNORE_INDEX, collate_for_training, encode_for_training
from ttrlab.models.runtime import Runtime


def stop_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>"):
        token_id = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
        if token_id is not None:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[tuple[str, str]], max_new_tokens: int, batch_size: int,
             runtime: Runtime) -> list[str]:
    """Greedy answers to (instruction, input) prompts, in input order, on `runtime`'s device and
    in its precision."""
    model.eval()
    device = runtime.device
    encoded = [prompt_ids(tokenizer, instruction, input_text) for instruction, input_text in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_token_ids(tokenizer),
    )
    answers = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in positions)
        input_ids = torch.full((len(positions), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(positions), width), dtype=torch.long)
        for row, i in enumerate(positions):
            n = len(encoded[i])
            input_ids[row, width - n :] = torch.tensor(encoded[i])
            attention[row, width - n :] = 1
        with runtime.autocast():
            output = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config)
        for row, i in enumerate(positions):
            answers[i] = tokenizer.decode(output[row, width:].cpu(), skip_special_tokens=True).strip()
    return answers


@torch.inference_mode()
def response_perplexity(model, tokenizer, examples: list[InstructionExample], max_length: int, batch_size: int,
                        runtime: Runtime) -> float | None:
    """exp(total NLL of response tokens / number of response tokens), response-only as in training,
    on `runtime`'s device and in its precision."""
    if not examples:
        return None
    model.eval()
    device = runtime.device
    features = encode_for_training(tokenizer, examples, max_length)
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = collate_for_training(tokenizer, [features[i] for i in order[start : start + batch_size]])
        with runtime.autocast():
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        # prompt tuning (peft) prepends its virtual tokens: the input's logits are the last ones
        logits = logits[:, -batch["input_ids"].shape[1]:]
        targets = batch["labels"][:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total += float(nll)
        count += int((targets != IGNORE_INDEX).sum())
    return math.exp(total / count) if count else None


def rouge_l(predictions: list[str], references: list[str]) -> float | None:
    """Mean ROUGE-L F1 (rouge-score, Porter stemming)."""
    if not predictions:
        return None
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(reference, prediction)["rougeL"].fmeasure for prediction, reference in zip(predictions, references)]
    return float(sum(scores) / len(scores))
