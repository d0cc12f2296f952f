"""STRIP (Gao et al. 2019), for text: perturb each test input `strip_copies` times with
held-out clean text and average the entropy of the victim's predicted class distribution over
the copies. A trigger keeps forcing the target whatever else the input says, so a triggered
input's entropy stays low; a clean input's prediction wavers.

The perturbation (`strip_perturbation`):
- `replace` (default; the text variant of STRIP-ViTA, Gao et al. 2021): each copy swaps
  round(`strip_replace_ratio` x words) of the input's words, chosen at random, for words drawn
  from the held-out clean texts;
- `concat` (the image superimposition read as text): each copy appends one held-out sentence.

The threshold is the `strip_frr` quantile of the held-out clean inputs' own entropies (each
perturbed the same way with the other held-out texts): an input at or below it is flagged and
rejected. The defended metrics count a rejected input as wrong for clean accuracy (and as not
predicted positive for precision, recall, F1), and a rejected triggered input as an attack that
failed (ASR: triggered non-target inputs predicted as the target *and accepted*). Reported: FRR
(share of clean test inputs flagged), FAR (share of triggered test inputs whose true label is not
the target that are not flagged: the attacks that get through the detector), the AUROC of
-entropy separating triggered from clean, the threshold and the mean entropies.
"""
from __future__ import annotations

import time

import numpy as np

from ttrlab.defenses.base import DEFENSES, Defense, Outcome, auroc
from ttrlab.core.streams import rng_for


@DEFENSES.register("strip")
class Strip(Defense):
    name = "strip"
    summary = "STRIP (Gao et al. 2019): low prediction entropy under perturbation with held-out text flags a trigger"
    kind = "detector"
    uses = ("defense_holdout", "strip_copies", "strip_perturbation", "strip_replace_ratio", "strip_frr",
            "strip_max_inputs")

    def perturb(self, example, heldout_texts: list[str], pool: list[str], rng: np.random.Generator):
        """`strip_copies` perturbed versions of `example` (its last segment perturbed)."""
        s = self.settings
        copies = []
        words = example.texts[-1].split()
        for _ in range(s.strip_copies):
            if s.strip_perturbation == "concat":
                text = f"{example.texts[-1]} {heldout_texts[int(rng.integers(len(heldout_texts)))]}"
            else:
                new = list(words)
                count = max(1, int(round(s.strip_replace_ratio * len(new)))) if new else 0
                for i in rng.choice(len(new), size=count, replace=False) if count else ():
                    new[int(i)] = pool[int(rng.integers(len(pool)))]
                text = " ".join(new)
            copies.append(example.with_texts((*example.texts[:-1], text)))
        return copies

    def entropies(self, victim, examples, heldout_texts, pool, rng) -> np.ndarray:
        """Mean prediction entropy (nats) over each example's perturbed copies (`victim.forward`
        runs in inference mode)."""
        copies = [c for e in examples for c in self.perturb(e, heldout_texts, pool, rng)]
        _, logits = victim.forward(victim.prepared.model, copies)
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)
        return entropy.reshape(len(examples), self.settings.strip_copies).mean(axis=1)

    def defend(self, victim):
        started = time.perf_counter()
        s, c = self.settings, self.config
        rng = rng_for(c.seed, "defense")
        heldout = victim.heldout(s.defense_holdout)
        heldout_texts = [e.texts[-1] for e in heldout]
        pool = [w for text in heldout_texts for w in text.split()]
        limit = s.strip_max_inputs or len(victim.data.dev)
        dev = victim.data.dev[:limit]
        triggered = victim.poisoned.triggered_dev[:limit] if victim.poisoned.triggered_dev is not None else None

        threshold = float(np.quantile(self.entropies(victim, heldout, heldout_texts, pool, rng), s.strip_frr))
        clean_entropy = self.entropies(victim, dev, heldout_texts, pool, rng)
        clean_flagged = clean_entropy <= threshold
        labels = np.array([e.label for e in dev])
        metrics = {"clean": victim.metrics(labels, victim.predict(victim.prepared.model, dev), clean_flagged),
                   "triggered": None, "asr": None}
        detection = {"frr": float(clean_flagged.mean()), "far": None, "auroc": None, "threshold": threshold,
                     "clean_entropy_mean": float(clean_entropy.mean()), "triggered_entropy_mean": None,
                     "evaluated_inputs": len(dev)}
        counts = {"heldout": len(heldout), "clean_inputs": len(dev), "clean_flagged": int(clean_flagged.sum())}
        if triggered is not None:
            from ttrlab.evaluation import attack_success_rate

            triggered_entropy = self.entropies(victim, triggered, heldout_texts, pool, rng)
            flagged = triggered_entropy <= threshold
            predicted = victim.predict(victim.prepared.model, triggered)
            accepted = np.where(flagged, -1, predicted)  # a rejected input is no prediction at all
            metrics["triggered"] = victim.metrics(labels, predicted, flagged)
            metrics["asr"] = attack_success_rate(labels, accepted, victim.target_label)
            victims = labels != victim.target_label
            detection.update(
                far=float((~flagged[victims]).mean()) if victims.any() else None,
                auroc=auroc(np.concatenate([-clean_entropy, -triggered_entropy]),
                            np.concatenate([np.zeros(len(dev), bool), np.ones(len(triggered), bool)])),
                triggered_entropy_mean=float(triggered_entropy.mean()))
            counts.update(triggered_inputs=len(triggered), triggered_flagged=int(flagged.sum()))
        if limit < len(victim.data.dev):  # the undefended numbers on the same screened inputs
            detection.update(self._before_on(victim, dev, triggered))
        return Outcome(metrics=metrics, detection=detection, counts=counts,
                       details={"perturbation": s.strip_perturbation, "seconds_screening": round(time.perf_counter() - started, 3)})

    @staticmethod
    def _before_on(victim, dev, triggered):
        from ttrlab.evaluation import attack_success_rate

        labels = np.array([e.label for e in dev])
        before = {"clean_accuracy_before_evaluated": float((victim.predict(victim.prepared.model, dev) == labels).mean())}
        if triggered is not None:
            before["asr_before_evaluated"] = attack_success_rate(labels, victim.predict(victim.prepared.model, triggered),
                                                                 victim.target_label)
        return before
