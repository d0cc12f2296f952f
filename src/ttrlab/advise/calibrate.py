"""Calibration: how well do the predictors rank configurations they were not fitted on?

The independent unit is the configuration (its seeds are averaged into its measured harm; a
seed is never a unit). Every configuration gets a held-out prediction from a model fitted on the
*other* configurations only (`folds`: leave one configuration out, or K groups of them); then

    ρ = Spearman(held-out predictions, measured harm) over the configurations,

with a percentile bootstrap interval that resamples configurations (the held-out predictions are
fixed: the interval is about which configurations were observed, not about refitting). The model
is ridge regression on the standardised predictors (fitted on the training fold's mean and
spread), one predictor alone or several together; its sign is fitted, not assumed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RIDGE = 1.0  # penalty on standardised coefficients: shrinks a many-predictor fit on ~20 configurations
BOOTSTRAP = 2000


def folds(groups: Sequence[str], k: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) per fold. Rows with the same group (configuration key) are
    always on the same side, so a held-out configuration's runs never enter its fit. k None:
    leave one group out; else k folds of whole groups, in sorted group order dealt round-robin."""
    names = sorted(set(groups))
    k = len(names) if k is None else min(k, len(names))
    fold_of = {name: i % k for i, name in enumerate(names)}
    labels = np.array([fold_of[g] for g in groups])
    return [(np.flatnonzero(labels != f), np.flatnonzero(labels == f)) for f in range(k)]


@dataclass
class Ridge:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, penalty: float = RIDGE) -> Ridge:
        mean, scale = x.mean(axis=0), x.std(axis=0)
        # a constant column (up to round-off in its mean) is all zeros: coefficient 0, ranks nothing
        scale = np.where(scale > 1e-12 * np.maximum(np.abs(mean), 1.0), scale, np.inf)
        z = (x - mean) / scale
        yc = y - y.mean()
        coef = np.linalg.solve(z.T @ z + penalty * np.eye(z.shape[1]), z.T @ yc)
        return cls(mean, scale, coef, float(y.mean()))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + self.score(x)

    def score(self, x: np.ndarray) -> np.ndarray:
        """The prediction without the intercept: what ranks (see `held_out_predictions`)."""
        return ((x - self.mean) / self.scale) @ self.coef


def held_out_predictions(x: np.ndarray, y: np.ndarray, groups: Sequence[str], k: int | None = None,
                         fit: Callable[[np.ndarray, np.ndarray], Ridge] = Ridge.fit, how: str = "score") -> np.ndarray:
    """Each row's ranking score by the model fitted on the other folds only.

    Why the score and not the prediction: each fold's intercept is the mean harm of the *other*
    configurations, so leaving out a high-harm configuration lowers its own prediction — across
    leave-one-out folds the intercepts alone are perfectly anti-correlated with harm (ρ = −1 for a
    predictor with no spread). The intercept ranks nothing within a fold; left out, a predictor
    with no signal scores ρ ≈ 0 instead of a spurious negative one."""
    predictions = np.full(len(y), np.nan)
    for train, test in folds(groups, k):
        if len(train) >= 2:
            predictions[test] = getattr(fit(x[train], y[train]), how)(x[test])
    return predictions


def spearman_interval(predicted: np.ndarray, measured: np.ndarray, seed: int = 0,
                      resamples: int = BOOTSTRAP, level: float = 0.95) -> dict[str, float | int | None]:
    """Spearman ρ, scipy's p, and the bootstrap percentile interval over rows (configurations)."""
    from scipy.stats import rankdata, spearmanr

    keep = np.isfinite(predicted) & np.isfinite(measured)
    p, m = predicted[keep], measured[keep]
    n = int(keep.sum())
    if n < 4 or np.ptp(p) == 0 or np.ptp(m) == 0:
        return {"rho": None, "low": None, "high": None, "p": None, "n": n}
    result = spearmanr(p, m)
    # all resamples at once: ranks with ties averaged (as spearmanr), then Pearson row by row
    rows = np.random.default_rng(seed).integers(0, n, (resamples, n))
    rp, rm = rankdata(p[rows], axis=1), rankdata(m[rows], axis=1)
    rp -= rp.mean(axis=1, keepdims=True)
    rm -= rm.mean(axis=1, keepdims=True)
    norm = np.sqrt((rp**2).sum(axis=1) * (rm**2).sum(axis=1))
    draws = (rp * rm).sum(axis=1)[norm > 0] / norm[norm > 0]  # a resample of one repeated value has no ρ
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail]) if draws.size else (np.nan, np.nan)
    return {"rho": float(result.statistic), "low": float(low), "high": float(high), "p": float(result.pvalue), "n": n}


def feature_matrix(records: Sequence[dict], names: Sequence[str]) -> np.ndarray:
    """Rows = probe records, columns = the named predictors' fitted features (NaN where undefined)."""
    from ttrlab.advise.predictors import PREDICTORS

    values = [[PREDICTORS.get(name).value(r) for name in names] for r in records]
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)


def evaluate(records: Sequence[dict], harm: np.ndarray, groups: Sequence[str], names: Sequence[str],
             k: int | None = None, seed: int = 0) -> dict:
    """Held-out ρ of one model (the predictors `names` together) over the configurations whose
    features are all defined; also the held-out predictions, and the sign of the full-data fit."""
    x = feature_matrix(records, names)
    rows = np.flatnonzero(np.isfinite(x).all(axis=1))
    predicted = np.full(len(harm), np.nan)
    chosen_groups = [groups[i] for i in rows]
    predicted[rows] = held_out_predictions(x[rows], harm[rows], chosen_groups, k)
    summary = spearman_interval(predicted, harm, seed)
    summary["predicted"] = predicted
    if len(rows) >= 2:
        summary["coef"] = Ridge.fit(x[rows], harm[rows]).coef.tolist()
    return summary
