"""Aggregation and bootstrap statistics against values computed by hand and by sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from fume.reporting.stats import (
    balanced_accuracy_weighted,
    mean_std,
    miou_weighted,
    paired_bootstrap_balanced_accuracy,
    paired_bootstrap_miou,
    resample_counts,
    unpaired_bootstrap_difference,
)


def test_mean_std_by_hand():
    mean, std, n = mean_std([1.0, 2.0, 4.0])
    assert n == 3
    assert mean == pytest.approx(7 / 3)
    # sample std (ddof=1): ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3
    assert std == pytest.approx(math.sqrt(7 / 3))


def test_mean_std_single_and_missing_values():
    assert mean_std([0.8]) == (0.8, 0.0, 1)
    assert mean_std([0.5, None, float("nan"), 0.7])[:2] == pytest.approx((0.6, math.sqrt(0.02)))
    mean, std, n = mean_std([])
    assert n == 0 and math.isnan(mean) and math.isnan(std)


def test_resample_counts_are_the_draws_of_the_seeded_generator():
    counts = resample_counts(5, resamples=4, seed=3)
    draws = np.random.default_rng(3).integers(0, 5, size=(4, 5))
    expected = np.stack([np.bincount(row, minlength=5) for row in draws])
    np.testing.assert_array_equal(counts, expected)
    assert (counts.sum(1) == 5).all()


def test_balanced_accuracy_weighted_matches_sklearn():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    ones = np.ones(6)
    assert balanced_accuracy_weighted(y_true, y_pred, ones, 3) == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    # integer weights = repeated pairs; a class left out (weight 0) drops out of the mean, as in sklearn
    w = np.array([2, 0, 1, 0, 3, 1])
    rep = np.repeat(np.arange(6), w)
    assert balanced_accuracy_weighted(y_true, y_pred, w.astype(float), 3) == pytest.approx(balanced_accuracy_score(y_true[rep], y_pred[rep]))


def test_miou_weighted_by_hand():
    # two pairs, three classes: pooled IoU = (1+3)/(2+4)=2/3, (0+1)/(1+1)=1/2, class 2 never present -> left out
    inter = np.array([[1, 0, 0], [3, 1, 0]])
    union = np.array([[2, 1, 0], [4, 1, 0]])
    assert miou_weighted(inter, union, np.ones(2)) == pytest.approx((2 / 3 + 1 / 2) / 2)
    # pair 2 drawn twice: (1+6)/(2+8)=0.7, (0+2)/(1+2)=2/3
    assert miou_weighted(inter, union, np.array([1.0, 2.0])) == pytest.approx((0.7 + 2 / 3) / 2)


def test_paired_bootstrap_balanced_accuracy_matches_a_loop_over_the_same_draws():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 40)
    a = np.where(rng.random(40) < 0.8, y, rng.integers(0, 3, 40))
    b = np.where(rng.random(40) < 0.6, y, rng.integers(0, 3, 40))
    interval = paired_bootstrap_balanced_accuracy(y, [a], [b], 3, resamples=300, seed=5)
    draws = np.random.default_rng(5).integers(0, 40, size=(300, 40))
    diffs = [balanced_accuracy_score(y[d], a[d]) - balanced_accuracy_score(y[d], b[d]) for d in draws]
    low, high = np.quantile(diffs, [0.025, 0.975])
    assert interval.difference == pytest.approx(balanced_accuracy_score(y, a) - balanced_accuracy_score(y, b))
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert interval.resamples == 300


def test_paired_bootstrap_identical_and_perfect_models():
    y = np.array([0, 1, 2, 0, 1, 2])
    same = paired_bootstrap_balanced_accuracy(y, [y], [y], 3, resamples=50)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0) and not same.significant
    wrong = (y + 1) % 3  # every pair wrong: balanced accuracy 0 in every resample
    better = paired_bootstrap_balanced_accuracy(y, [y], [wrong], 3, resamples=50)
    assert (better.difference, better.low, better.high) == (1.0, 1.0, 1.0) and better.significant


def test_paired_bootstrap_miou_averages_seeds_per_resample():
    inter_a = np.array([[2, 1, 0], [1, 1, 1], [3, 0, 2]])
    union_a = np.array([[3, 1, 1], [2, 2, 1], [3, 1, 2]])
    inter_b = np.array([[1, 0, 0], [1, 0, 1], [1, 0, 1]])
    interval = paired_bootstrap_miou([(inter_a, union_a), (inter_b, union_a)], [(inter_b, union_a)], resamples=200, seed=1)
    ones = np.ones(3)
    full_a = (miou_weighted(inter_a, union_a, ones) + miou_weighted(inter_b, union_a, ones)) / 2
    assert interval.difference == pytest.approx(full_a - miou_weighted(inter_b, union_a, ones))
    w = resample_counts(3, 200, 1)
    diffs = (miou_weighted(inter_a, union_a, w) + miou_weighted(inter_b, union_a, w)) / 2 - miou_weighted(inter_b, union_a, w)
    assert (interval.low, interval.high) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])))


def test_unpaired_bootstrap_resamples_each_set_on_its_own():
    a = np.array([1.0, 0.0, 1.0, 1.0])
    b = np.array([0.0, 1.0, 0.0])

    def mean_of(x):
        return lambda w: (w @ x) / w.sum(-1)

    interval = unpaired_bootstrap_difference(mean_of(a), 4, mean_of(b), 3, resamples=500, seed=2)
    assert interval.difference == pytest.approx(0.75 - 1 / 3)
    wa, wb = resample_counts(4, 500, 2), resample_counts(3, 500, 3)
    expected = np.quantile((wa @ a) / 4 - (wb @ b) / 3, [0.025, 0.975])
    assert (interval.low, interval.high) == pytest.approx(tuple(expected))
