"""The trained victim a defense works on: its config, data, poisoned split and model, and what a
defense does with them — score a model on the run's test sets, read per-example representations
and losses, draw held-out clean training examples, retrain a fresh model or go on training one.

The victim is the run's `pipeline.RunState`; a retrain goes through the run's own train path
(`pipeline.train`: the model, the method's `prepare`, `training.optimize`, the run's device and
precision), so a defense works alike for every method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ttrlab.data.examples import Example
from ttrlab.core.errors import UserError
from ttrlab.core.streams import rng_for


@dataclass
class Victim:
    experiment: Any  # the ClassificationExperiment (loads fresh models)
    state: Any  # the run's `pipeline.RunState`: the victim trained normally on the poisoned split
    before: dict[str, Any]  # the undefended metrics (clean, triggered, asr)
    target_label: int  # the backdoor's target (ASR counts predictions of it)
    prepared: Any = None  # PreparedModel: the system the defense ends with (at first the run's model; a filter's retrain)

    def __post_init__(self):
        if self.prepared is None:
            self.prepared = self.state.prepared

    @property
    def config(self):
        return self.state.config

    @property
    def tokenizer(self):
        return self.state.tokenizer

    @property
    def data(self):  # ClassificationDataset
        return self.state.data

    @property
    def poisoned(self):  # PoisonedClassification
        return self.state.poisoned

    @property
    def runtime(self):
        return self.state.runtime

    # ---- the run's data ---------------------------------------------------------------------
    @property
    def train(self) -> list[Example]:
        return list(self.poisoned.split.examples)

    def poisoned_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.poisoned.split.examples), dtype=bool)
        mask[list(self.poisoned.split.changed)] = True
        return mask

    def heldout(self, size: int) -> list[Example]:
        """`size` clean training examples (true labels) outside the run's training subset,
        drawn from the seed's `defense_holdout` stream: the clean data a defender is assumed to have."""
        from ttrlab.data import load_split

        used = {e.row for e in self.data.train}
        full = load_split(self.data.task, "train", self.config.data_dir, self.config.data_source)
        candidates = [e for e in full if e.row not in used]
        if not candidates:
            raise UserError(f"defense {self.config.defense!r} needs held-out clean training examples, but the run uses "
                            f"all {len(full)} of {self.data.task.name} train; lower train_size")
        rng = rng_for(self.config.seed, "defense_holdout")
        chosen = np.sort(rng.choice(len(candidates), size=min(size, len(candidates)), replace=False))
        return [candidates[int(i)] for i in chosen]

    # ---- models -------------------------------------------------------------------------------
    def predict(self, model, examples: list[Example]) -> np.ndarray:
        from ttrlab.training.loop import predict

        c = self.config
        return predict(model, self.tokenizer, examples, c.max_length, c.eval_batch_size, self.runtime)

    def metrics(self, labels, predicted, rejected=None) -> dict[str, float]:
        """The run's classification metrics of `predicted`; `rejected` (a mask) counts as wrong."""
        from ttrlab.defenses.base import rejecting_metrics

        rejected = np.zeros(len(labels), dtype=bool) if rejected is None else rejected
        return rejecting_metrics(labels, predicted, rejected, self.data.task.positive_label, self.data.task.num_labels)

    def score(self, model) -> dict[str, Any]:
        """The run's usual metrics (clean, triggered, asr, extra) of `model`."""
        return self.experiment.score(self.state, model)

    @torch.inference_mode()
    def forward(self, model, examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
        """(representations, logits) per example, in input order. The representation is what the
        classification head sees (for BERT: the pooled [CLS]), read by a hook on the head."""
        from ttrlab.models.loading import classification_head
        from ttrlab.training.loop import encode, pad_batch

        c = self.config
        model.eval()
        seen: list[torch.Tensor] = []
        # peft wraps the head (modules_to_save); hook every linear layer of it, keep the one that ran
        hooks = [layer.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
                 for layer in classification_head(model)]
        features = encode(self.tokenizer, examples, c.max_length)
        by_length = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        representations: list[np.ndarray | None] = [None] * len(features)
        logits_out: list[np.ndarray | None] = [None] * len(features)
        try:
            for start in range(0, len(by_length), c.eval_batch_size):
                positions = by_length[start : start + c.eval_batch_size]
                batch = pad_batch(self.tokenizer, [features[i] for i in positions])
                seen.clear()
                with self.runtime.autocast():
                    logits = model(**self.runtime.to_device(batch)).logits.float()
                if not seen:
                    raise RuntimeError("the classification head did not run: no representation to read")
                hidden = seen[0].float()
                if hidden.dim() == 3:  # a GPT-style head scores every position: the last real token's
                    last = batch["attention_mask"].sum(dim=1).to(hidden.device) - 1
                    hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
                hidden, logits = hidden.cpu().double().numpy(), logits.cpu().double().numpy()
                for row, i in enumerate(positions):
                    representations[i], logits_out[i] = hidden[row], logits[row]
        finally:
            for hook in hooks:
                hook.remove()
        return np.stack(representations), np.stack(logits_out)

    def losses(self, logits: np.ndarray, examples: list[Example]) -> np.ndarray:
        """Per-example cross-entropy of `logits` against the examples' (possibly poisoned) labels."""
        labels = np.array([e.label for e in examples])
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -log_probs[np.arange(len(labels)), labels]

    def train_fresh(self, examples: list[Example]):
        """A freshly loaded model (the run's seed: same head, same LoRA init), prepared by the run's
        method and trained on `examples` with the run's optimisation: the run's own train path
        (`pipeline.train`). (PreparedModel, train record)."""
        from ttrlab.kinds.pipeline import train

        retrained = train(self.experiment, self.state.fresh(), examples)
        return retrained.prepared, retrained.train

    def train_more(self, model, examples: list[Example], steps: int, lr: float | None) -> dict[str, Any]:
        """Go on training `model` on `examples` for `steps` steps (a fresh AdamW and schedule,
        the run's other optimisation settings; `lr` None: the run's rate). The train record."""
        from ttrlab.training.loop import classification_training_set, optimize

        c = self.config
        settings = c.replace(max_steps=steps, lr=lr if lr is not None else c.learning_rate())
        training = classification_training_set(self.tokenizer, examples, c.max_length)
        return optimize(model, training, settings, c.seed, self.runtime).as_dict()
