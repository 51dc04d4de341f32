"""Statistics for the report: mean and standard deviation over seeds, and paired bootstrap
confidence intervals of a difference in balanced accuracy or mIoU on the same test pairs.

Both bootstrap statistics are recomputed from per-pair sufficient statistics, exactly as the
evaluation computes them on the whole test split:

- balanced accuracy: mean over the classes present of the recall (sklearn's convention);
- mIoU: per class, pixel intersections and unions summed over the resampled pairs (both gases),
  IoU = sum(I) / sum(U), then the mean over the classes whose union is non-zero.

A resample draws test pairs with replacement; the SAME draw is applied to both models, so the
interval reflects the difference on identical data. With several seeds per model the statistic
of a resample is the mean over that model's seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation with ddof=1, n) over the finite values; std is 0.0 for one
    value and both are NaN for none."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return float(x.mean()), std, int(x.size)


def resample_counts(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(resamples, n) matrix: how often each of the n pairs is drawn in each bootstrap resample
    (n draws with replacement per resample). Weighted sums over pairs are then one matrix product."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one test pair")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = (np.arange(resamples) * n)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    total = np.where(finite, values, 0.0).sum(axis=-1)
    count = finite.sum(axis=-1)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def balanced_accuracy_weighted(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """Balanced accuracy under pair weights: weights (..., N) -> (...). Classes with no (weighted)
    true pair are left out of the mean, as sklearn.metrics.balanced_accuracy_score does."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    onehot = np.eye(num_classes)[y_true]  # (N, C)
    support = weights @ onehot  # (..., C)
    hits = weights @ (onehot * (y_pred == y_true)[:, None])
    recall = np.divide(hits, support, out=np.full(support.shape, np.nan), where=support > 0)
    return _nanmean_rows(recall)


def miou_weighted(intersection: np.ndarray, union: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """mIoU under pair weights: intersection and union (N, C) pixel counts, weights (..., N) -> (...)."""
    inter, uni = weights @ np.asarray(intersection, dtype=float), weights @ np.asarray(union, dtype=float)
    iou = np.divide(inter, uni, out=np.full(uni.shape, np.nan), where=uni > 0)
    return _nanmean_rows(iou)


@dataclass(frozen=True)
class Interval:
    """A difference (model minus reference) on the full test set and its bootstrap percentile CI."""

    difference: float
    low: float
    high: float
    resamples: int

    @property
    def significant(self) -> bool:
        """The 95 % interval excludes zero."""
        return bool(self.low > 0 or self.high < 0)


def percentile_interval(full: float, samples: np.ndarray, level: float = 0.95) -> Interval:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0 or not np.isfinite(full):
        return Interval(float("nan"), float("nan"), float("nan"), int(finite.size))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return Interval(float(full), float(low), float(high), int(finite.size))


def paired_bootstrap_balanced_accuracy(
    y_true: np.ndarray,
    pred_model: Sequence[np.ndarray],
    pred_reference: Sequence[np.ndarray],
    num_classes: int,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> Interval:
    """CI of balanced_accuracy(model) - balanced_accuracy(reference) on the same N test pairs.
    pred_model / pred_reference: one (N,) prediction array per seed."""
    y_true = np.asarray(y_true, dtype=int)
    w = resample_counts(len(y_true), resamples, seed)
    ones = np.ones(len(y_true))

    def stat(preds: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
        return np.mean([balanced_accuracy_weighted(y_true, p, weights, num_classes) for p in preds], axis=0)

    full = float(stat(pred_model, ones) - stat(pred_reference, ones))
    return percentile_interval(full, stat(pred_model, w) - stat(pred_reference, w), level)


def paired_bootstrap_miou(
    counts_model: Sequence[tuple[np.ndarray, np.ndarray]],
    counts_reference: Sequence[tuple[np.ndarray, np.ndarray]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> Interval:
    """CI of mIoU(model) - mIoU(reference); counts_*: one (intersection, union) pair of (N, C)
    arrays per seed, rows in the same test-pair order for every array."""
    n = len(counts_model[0][0])
    w = resample_counts(n, resamples, seed)
    ones = np.ones(n)

    def stat(counts: Sequence[tuple[np.ndarray, np.ndarray]], weights: np.ndarray) -> np.ndarray:
        return np.mean([miou_weighted(i, u, weights) for i, u in counts], axis=0)

    full = float(stat(counts_model, ones) - stat(counts_reference, ones))
    return percentile_interval(full, stat(counts_model, w) - stat(counts_reference, w), level)


def unpaired_bootstrap_difference(
    stat_a: Callable[[np.ndarray], np.ndarray], n_a: int, stat_b: Callable[[np.ndarray], np.ndarray], n_b: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, level: float = 0.95
) -> Interval:
    """CI of stat_a - stat_b for two different test sets (e.g. the grouped and the random split),
    each resampled on its own. stat_x(weights (..., n_x)) -> (...)."""
    wa = resample_counts(n_a, resamples, seed)
    wb = resample_counts(n_b, resamples, seed + 1)
    full = float(stat_a(np.ones(n_a)) - stat_b(np.ones(n_b)))
    return percentile_interval(full, stat_a(wa) - stat_b(wb), level)
