"""Training-data filters: score every training example with the victim trained normally on the
poisoned split (the set-up of the papers below: the defender trains once, inspects, retrains),
drop the top-scored `defense_fraction` (default 1.5 x the attack rate, `base.filter_fraction`),
and retrain a fresh model of the same method and seed on the rest.

Recorded: detection precision and recall at the drop, AUROC of the scores against the
attack's recorded poisoned positions, `removed`, `poisoned_removed`; the defended metrics are
those of the retrained model.
"""
from __future__ import annotations

import time

import numpy as np

from ttrlab.defenses.base import DEFENSES, Defense, Outcome, detection_metrics, filter_fraction, top_fraction
from ttrlab.core.streams import rng_for


class TrainingFilter(Defense):
    kind = "filter"
    uses = ("defense_fraction",)

    def scores(self, victim) -> np.ndarray:
        """One suspicion score per training example (higher: more likely poisoned)."""
        raise NotImplementedError

    def defend(self, victim) -> Outcome:
        started = time.perf_counter()
        train = victim.train
        scores = self.scores(victim)
        removed = top_fraction(scores, filter_fraction(self.config))
        detection = detection_metrics(scores, victim.poisoned_mask(), removed)
        scored = time.perf_counter() - started
        kept = [e for e, drop in zip(train, removed) if not drop]
        prepared, retrain = victim.train_fresh(kept)
        victim.prepared = prepared  # the defended system is the retrained model
        return Outcome(
            metrics=victim.score(prepared.model),
            detection=detection,
            counts={"train_examples": len(train), "removed": detection["removed"], "kept": len(kept),
                    "poisoned": detection["poisoned"], "poisoned_removed": detection["poisoned_removed"]},
            details={"score_seconds": round(scored, 3), "retrain": retrain},
        )


def by_class(victim) -> dict[int, np.ndarray]:
    """Training positions per (possibly poisoned) label: the filters look at each class alone."""
    labels = np.array([e.label for e in victim.train])
    return {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}


@DEFENSES.register("spectral")
class SpectralSignatures(TrainingFilter):
    """Spectral signatures (Tran, Li & Madry 2018): within each label, centre the victim's
    representations (the classification head's input) and score each example by its squared
    projection on the top singular direction; poisoned examples of a label share a direction the
    clean ones do not. Departure: one drop over all labels by score (the paper drops 1.5 eps per
    label); with one target label the poison sits in one class either way."""

    name = "spectral"
    summary = "spectral signatures (Tran et al. 2018): squared projection on the top singular direction per class"

    def scores(self, victim):
        representations, _ = victim.forward(victim.prepared.model, victim.train)
        scores = np.zeros(len(representations))
        for positions in by_class(victim).values():
            if len(positions) < 2:
                continue
            centred = representations[positions] - representations[positions].mean(axis=0)
            top = np.linalg.svd(centred, full_matrices=False)[2][0]
            scores[positions] = (centred @ top) ** 2
        return scores


@DEFENSES.register("activation_clustering")
class ActivationClustering(TrainingFilter):
    """Activation clustering (Chen et al. 2018): within each label, reduce the victim's
    representations to `ac_dims` dimensions and split them by 2-means; the smaller cluster is
    suspicious. Departures: PCA instead of ICA (deterministic, no convergence issues; the paper
    reports both work), and a score so that examples rank: an example's margin towards the
    smaller cluster, (d_large - d_small) / (d_large + d_small) in [-1, 1], times its class's
    silhouette score (a class split into two well-separated clusters, the paper's sign of
    poison, ranks above a clean class split in two arbitrary halves)."""

    name = "activation_clustering"
    summary = "activation clustering (Chen et al. 2018): per-class PCA + 2-means, the smaller cluster is suspicious"
    uses = ("defense_fraction", "ac_dims")

    def scores(self, victim):
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.metrics import silhouette_score

        representations, _ = victim.forward(victim.prepared.model, victim.train)
        scores = np.full(len(representations), -1.0)
        rng = rng_for(self.config.seed, "defense")
        for positions in by_class(victim).values():
            if len(positions) < 3:
                continue
            x = representations[positions]
            dims = min(self.settings.ac_dims, len(positions) - 1, x.shape[1])
            reduced = PCA(n_components=dims, svd_solver="full").fit_transform(x)
            kmeans = KMeans(n_clusters=2, n_init=10, random_state=int(rng.integers(2**31 - 1))).fit(reduced)
            assignment = kmeans.labels_
            if len(np.unique(assignment)) < 2:  # all points identical: nothing to tell apart
                scores[positions] = 0.0
                continue
            small = int(np.argmin(np.bincount(assignment, minlength=2)))
            distance = np.linalg.norm(reduced[:, None, :] - kmeans.cluster_centers_[None, :, :], axis=2)
            d_small, d_large = distance[:, small], distance[:, 1 - small]
            margin = (d_large - d_small) / np.maximum(d_large + d_small, 1e-12)
            scores[positions] = margin * float(silhouette_score(reduced, assignment))
        return scores


@DEFENSES.register("loss_filter")
class LossFilter(TrainingFilter):
    """Per-example loss of the victim on its own (poisoned) training labels, after normal
    training. Which end is suspicious depends on the attack (`loss_direction`): a backdoor's
    examples share a trigger that is learned faster and more completely than the task, so
    they end with the *lowest* losses (the observation behind Anti-Backdoor Learning, Li et
    al. 2021, which reads the loss early in training); flipped labels (UPA) contradict what the
    model learns from the rest, so they end with the *highest* losses. `auto` asks the
    attack's family: backdoor → low, anything else → high."""

    name = "loss_filter"
    summary = "per-example training loss of the victim: low for backdoors (learned fast), high for flipped labels"
    uses = ("defense_fraction", "loss_direction")

    def direction(self) -> str:
        from ttrlab.attacks import ATTACKS

        if self.settings.loss_direction != "auto":
            return self.settings.loss_direction
        return "low" if ATTACKS.get(self.config.attack).is_backdoor() else "high"

    def scores(self, victim):
        _, logits = victim.forward(victim.prepared.model, victim.train)
        losses = victim.losses(logits, victim.train)
        return -losses if self.direction() == "low" else losses

    def defend(self, victim):
        outcome = super().defend(victim)
        outcome.details["direction"] = self.direction()
        return outcome
