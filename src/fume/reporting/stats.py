"""Statistics for the report: mean and standard deviation over seeds (and folds), and confidence
intervals of a difference in balanced accuracy or mIoU on the same test recordings.

The unit of uncertainty is the recording (original_sample_id), never the pair: augmented copies
of one recording, and frames reused by several pairs, are not independent evidence.

Segmentation (mIoU): every distinct frame counts once and belongs to one recording, so the
variance is that of a cluster bootstrap over recordings: a resample draws the test recordings with
replacement (n_r = times recording r is drawn) and a frame of recording r counts n_r times.

Classification (balanced accuracy): a pair is a CO2 frame of recording a and a CH4 frame of
recording b, so pairs are clustered two ways at once (crossed). The variance is the two-way
cluster-robust one (Cameron, Gelbach & Miller 2011) estimated by bootstrap: V = V_rec - 2 V_pair,
where V_rec is the variance when recordings are resampled and a pair of a != b counts n_a x n_b
times (both drawn together: Owen's "pigeonhole" bootstrap for crossed factors; a pair within one
recording, or with one gas, n_a times), and V_pair the variance when only those two-recording
pairs are resampled on their own. V_rec alone counts each pair's own noise three times (Owen
2007): subtracting 2 V_pair removes the excess, so the width does not depend on how many copies
of a recording the test set holds. V is never taken below the pair-level bootstrap variance.

Both statistics are recomputed from per-pair / per-frame sufficient statistics under the weights,
exactly as the evaluation computes them on the whole test split:

- balanced accuracy: mean over the classes present of the recall (sklearn's convention);
- mIoU: per class, pixel intersections and unions summed over the weighted frames (both gases),
  IoU = sum(I) / sum(U), then the mean over the classes whose union is non-zero.

The same draws are applied to both models (a paired difference). Seeds: with several seeds per
model the statistic is the mean over its seeds, and the variance of those means over seeds
(sample variance / number of seeds, per model) is added, so seed-to-seed variation widens the
interval; with one seed it cannot enter, and the report says so. Interval: difference +- z x SE
(normal); p: two-sided normal p-value of difference / SE; `holm` adjusts a family of p-values.
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
    """(resamples, n) matrix: how often each of the n units (recordings) is drawn in each bootstrap
    resample (n draws with replacement per resample). Weighted sums are then one matrix product."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one test recording")
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
    """A difference (model minus reference) on the full test set, its confidence interval and p-value."""

    difference: float
    low: float
    high: float
    resamples: int
    p_value: float = float("nan")  # two-sided (module docstring)

    @property
    def significant(self) -> bool:
        """The 95 % interval excludes zero."""
        return bool(self.low > 0 or self.high < 0)


def percentile_interval(full: float, samples: np.ndarray, level: float = 0.95) -> Interval:
    """Percentile interval of bootstrap samples (p: twice the smaller tail share, +1 corrected)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0 or not np.isfinite(full):
        return Interval(float("nan"), float("nan"), float("nan"), int(finite.size))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    tail = min(np.sum(finite <= 0), np.sum(finite >= 0))
    p_value = min(1.0, 2.0 * (tail + 1) / (finite.size + 1))
    return Interval(float(full), float(low), float(high), int(finite.size), float(p_value))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count in the family)."""
    p = np.asarray(pvalues, dtype=float)
    finite = np.flatnonzero(np.isfinite(p))
    adjusted = np.full(p.shape, np.nan)
    m = len(finite)
    running = 0.0
    for rank, i in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


# ------------------------------------------------------------------ recording-level resampling


@dataclass(frozen=True)
class RecordingIndex:
    """Which recording each pair's CO2 and CH4 frame comes from, as indices 0..R-1 (-1 for an
    absent gas), in the pair order of the statistics it is used with."""

    co2: np.ndarray
    ch4: np.ndarray
    count: int

    @classmethod
    def from_ids(cls, co2: Sequence[str], ch4: Sequence[str]) -> RecordingIndex:
        """From recording ids per pair ('' or None for an absent gas)."""
        names = sorted({str(r) for r in [*co2, *ch4] if r not in ("", None) and r == r})
        where = {name: i for i, name in enumerate(names)}
        index = [np.array([where.get(str(r), -1) if r not in ("", None) and r == r else -1 for r in ids], dtype=int) for ids in (co2, ch4)]
        return cls(index[0], index[1], len(names))


@dataclass(frozen=True)
class Weights:
    """Per-resample weights: of each pair (classification) and of each gas's frame (segmentation)."""

    pairs: np.ndarray  # (..., N)
    co2: np.ndarray  # (..., N)
    ch4: np.ndarray  # (..., N)


def recording_weights(recordings: RecordingIndex, counts: np.ndarray) -> Weights:
    """Weights of pairs and frames from recording draw counts (..., R) (see the module docstring)."""
    padded = np.concatenate([counts, np.ones((*counts.shape[:-1], 1))], axis=-1)  # index -1: weight 1
    a, b = recordings.co2, recordings.ch4
    first = np.where(a >= 0, a, b)
    second = np.where((a >= 0) & (b >= 0) & (a != b), b, -1)
    frame = (lambda idx: np.where(idx >= 0, padded[..., idx], 0.0))
    return Weights(padded[..., first] * padded[..., second], frame(a), frame(b))


def unit_weights(recordings: RecordingIndex) -> Weights:
    return recording_weights(recordings, np.ones(recordings.count))


def _seed_variance(full_per_seed: list[float]) -> float:
    """Variance over seeds of their mean: sample variance / seeds (0 for one seed)."""
    return float(np.var(full_per_seed, ddof=1) / len(full_per_seed)) if len(full_per_seed) > 1 else 0.0


def recording_bootstrap(
    stat_model: Sequence[Callable[[Weights], np.ndarray]],
    stat_reference: Sequence[Callable[[Weights], np.ndarray]],
    recordings: RecordingIndex,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> Interval:
    """CI and p-value of mean-over-seeds stat(model) - stat(reference) on the same test pairs
    (see the module docstring); with no reference, of stat(model) itself. stat_*: one function per
    seed, Weights -> statistic (vectorised over the leading resample axis)."""
    from scipy.stats import norm

    n = len(recordings.co2)
    two = (recordings.co2 >= 0) & (recordings.ch4 >= 0) & (recordings.co2 != recordings.ch4)
    pairs = resample_counts(n, resamples, seed + 1)
    fixed = np.ones((resamples, n))
    by_recording = recording_weights(recordings, resample_counts(recordings.count, resamples, seed))
    two_recording_pairs = Weights(np.where(two, pairs, 1.0), fixed, fixed)  # frames fixed: no segmentation term
    all_pairs = Weights(pairs, fixed, fixed)
    ones = unit_weights(recordings)

    def difference(weights: Weights) -> np.ndarray:
        side = (lambda stats: np.mean([f(weights) for f in stats], axis=0) if stats else 0.0)
        return np.asarray(side(stat_model) - side(stat_reference), dtype=float)

    full_model, full_reference = [float(f(ones)) for f in stat_model], [float(f(ones)) for f in stat_reference]
    full = (np.mean(full_model) if full_model else 0.0) - (np.mean(full_reference) if full_reference else 0.0)
    if not np.isfinite(full):
        return Interval(float("nan"), float("nan"), float("nan"), resamples)
    variance = (lambda w: float(np.nanvar(difference(w))))
    data = max(variance(by_recording) - 2.0 * variance(two_recording_pairs), variance(all_pairs), 0.0)
    se = float(np.sqrt(data + _seed_variance(full_model) + _seed_variance(full_reference)))
    z = float(norm.ppf(0.5 + level / 2.0))
    p_value = float(2.0 * norm.sf(abs(full) / se)) if se > 0 else (1.0 if full == 0 else 0.0)
    return Interval(float(full), float(full - z * se), float(full + z * se), resamples, p_value)


def balanced_accuracy_stat(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> Callable[[Weights], np.ndarray]:
    return lambda w: balanced_accuracy_weighted(y_true, y_pred, w.pairs, num_classes)


def miou_stat(intersection: np.ndarray, union: np.ndarray) -> Callable[[Weights], np.ndarray]:
    """intersection, union: (N, 2, C) pixel counts of each pair's CO2 and CH4 frame (zero for an
    absent gas and for a frame already counted in an earlier pair)."""
    inter, uni = np.asarray(intersection, dtype=float), np.asarray(union, dtype=float)

    def stat(w: Weights) -> np.ndarray:
        i = w.co2 @ inter[:, 0] + w.ch4 @ inter[:, 1]
        u = w.co2 @ uni[:, 0] + w.ch4 @ uni[:, 1]
        iou = np.divide(i, u, out=np.full(u.shape, np.nan), where=u > 0)
        return _nanmean_rows(iou)

    return stat
