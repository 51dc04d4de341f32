"""Aggregation and bootstrap statistics against values computed by hand and by sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from fume.reporting.stats import (
    RecordingIndex,
    balanced_accuracy_stat,
    balanced_accuracy_weighted,
    holm,
    mean_std,
    miou_stat,
    miou_weighted,
    recording_bootstrap,
    recording_weights,
    resample_counts,
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


def test_recording_weights_follow_the_product_rule():
    # pairs: (co2 rec, ch4 rec) = (0, 1), (1, 1), (2, absent), (absent, 0)
    recordings = RecordingIndex.from_ids(["r0", "r1", "r2", ""], ["r1", "r1", "", "r0"])
    assert recordings.count == 3
    counts = np.array([[2.0, 3.0, 0.0]])
    w = recording_weights(recordings, counts)
    np.testing.assert_array_equal(w.pairs, [[6.0, 3.0, 0.0, 2.0]])  # n_a x n_b; one recording: n_a; one gas: n_a
    np.testing.assert_array_equal(w.co2, [[2.0, 3.0, 0.0, 0.0]])  # a frame counts as often as its recording
    np.testing.assert_array_equal(w.ch4, [[3.0, 3.0, 0.0, 2.0]])


def test_with_one_recording_per_pair_the_interval_is_the_classic_pair_bootstrap():
    from scipy.stats import norm

    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 40)
    a = np.where(rng.random(40) < 0.8, y, rng.integers(0, 3, 40))
    b = np.where(rng.random(40) < 0.6, y, rng.integers(0, 3, 40))
    ids = [f"r{i:02d}" for i in range(40)]  # single-gas pairs, one recording each
    recordings = RecordingIndex.from_ids(ids, [""] * 40)
    interval = recording_bootstrap([balanced_accuracy_stat(y, a, 3)], [balanced_accuracy_stat(y, b, 3)], recordings, resamples=300, seed=5)
    variances = []
    for s in (5, 6):  # the recording draws (seed) and the pair draws (seed + 1): here both are pair draws
        draws = np.random.default_rng(s).integers(0, 40, size=(300, 40))
        diffs = np.array([balanced_accuracy_score(y[d], a[d]) - balanced_accuracy_score(y[d], b[d]) for d in draws])
        variances.append(diffs.var())
    full = balanced_accuracy_score(y, a) - balanced_accuracy_score(y, b)
    se = np.sqrt(max(variances))
    assert interval.difference == pytest.approx(full)
    assert (interval.low, interval.high) == pytest.approx((full - 1.959964 * se, full + 1.959964 * se), rel=1e-5)
    assert interval.p_value == pytest.approx(2 * norm.sf(abs(full) / se))


def test_identical_and_perfect_models():
    y = np.array([0, 1, 2, 0, 1, 2])
    recordings = RecordingIndex.from_ids([f"r{i}" for i in range(6)], [f"r{(i + 1) % 6}" for i in range(6)])
    same = recording_bootstrap([balanced_accuracy_stat(y, y, 3)], [balanced_accuracy_stat(y, y, 3)], recordings, resamples=50)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0) and not same.significant
    wrong = (y + 1) % 3
    better = recording_bootstrap([balanced_accuracy_stat(y, y, 3)], [balanced_accuracy_stat(y, wrong, 3)], recordings, resamples=50)
    assert (better.difference, better.low, better.high) == (1.0, 1.0, 1.0) and better.significant


def _copies_study(copies: int, rng: np.random.Generator, driver: str, recordings_per_class: int = 30):
    """Test pairs from recordings_per_class recordings of each of 3 classes, each with 1 + copies
    frames per gas, paired at random within the class (as pairing does). Whether a model is right
    is a property of the recording (its copies look alike): model A is right on a recording with
    probability 0.8, model B 0.65. Segmentation: per recording, an IoU-like count."""
    n = 3 * recordings_per_class
    cls = np.repeat(np.arange(3), recordings_per_class)
    right_a, right_b = rng.random(n) < 0.8, rng.random(n) < 0.65
    inter = rng.integers(50, 100, n)
    co2, ch4 = [], []
    for c in range(3):
        members = np.flatnonzero(cls == c)
        frames = np.repeat(members, 1 + copies)
        co2.extend(frames)
        ch4.extend(rng.permutation(frames))
    co2, ch4 = np.array(co2), np.array(ch4)
    y = cls[co2]
    by = co2 if driver == "co2" else ch4  # the recording whose frame decides
    pred_a = np.where(right_a[by], y, (y + 1) % 3)
    pred_b = np.where(right_b[by], y, (y + 2) % 3)
    # Each gas frame once: the k-th copy of a recording is its own frame, counted on its one pair.
    seg = np.zeros((len(co2), 2, 2))
    seg[:, 0, 0], seg[:, 1, 0] = inter[co2], inter[ch4]
    union = np.full((len(co2), 2, 2), 100.0)
    seg_b = seg * 0.9
    ids = RecordingIndex.from_ids([f"r{i}" for i in co2], [f"r{i}" for i in ch4])
    return y, pred_a, pred_b, (seg, union), (seg_b, union), ids


@pytest.mark.parametrize("driver", ["co2", "ch4"])
def test_interval_width_does_not_shrink_with_augmented_copies(driver: str):
    """The same test recordings with 0 and with 10 augmented copies each: recording-level intervals
    keep their width (within 25 %), where a pair-level bootstrap would shrink them about sqrt(11) x.
    Whether a model is right depends on the CO2 (or the CH4) recording here, so the true width does
    not change with the copies (each recording's copies agree)."""
    widths, pair_level = {}, {}
    for copies in (0, 10):
        y, a, b, seg_a, seg_b, ids = _copies_study(copies, np.random.default_rng(3), driver)
        bal = recording_bootstrap([balanced_accuracy_stat(y, a, 3)], [balanced_accuracy_stat(y, b, 3)], ids, resamples=1000, seed=1)
        miou = recording_bootstrap([miou_stat(*seg_a)], [miou_stat(*seg_b)], ids, resamples=1000, seed=1)
        widths[copies] = (bal.high - bal.low, miou.high - miou.low)
        naive = RecordingIndex.from_ids([f"p{i}" for i in range(len(y))], [""] * len(y))  # every pair its own unit
        pair_level[copies] = recording_bootstrap([balanced_accuracy_stat(y, a, 3)], [balanced_accuracy_stat(y, b, 3)], naive, 1000, 1)
    for k in range(2):
        assert widths[10][k] == pytest.approx(widths[0][k], rel=0.25)
    naive_ratio = (pair_level[0].high - pair_level[0].low) / (pair_level[10].high - pair_level[10].low)
    assert naive_ratio > 2.5  # the scheme this replaces is fooled by the copies


def test_seeds_are_resampled_so_seed_variation_widens_the_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    ids = RecordingIndex.from_ids([f"r{i}" for i in range(200)], [""] * 200)
    ref = [balanced_accuracy_stat(y, np.where(rng.random(200) < 0.7, y, (y + 1) % 3), 3)]
    alike = [balanced_accuracy_stat(y, np.where(rng.random(200) < 0.75, y, (y + 1) % 3), 3) for _ in range(3)]
    spread = [balanced_accuracy_stat(y, np.where(rng.random(200) < p, y, (y + 1) % 3), 3) for p in (0.5, 0.75, 0.98)]
    narrow = recording_bootstrap(alike, ref, ids, resamples=1000, seed=2)
    wide = recording_bootstrap(spread, ref, ids, resamples=1000, seed=2)
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low)


def test_holm_by_hand():
    # sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> kept monotone at 0.06)
    assert holm([0.03, 0.01, float("nan"), 0.04, 0.02]) == pytest.approx([0.06, 0.04, float("nan"), 0.06, 0.06], nan_ok=True)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("driver", ["co2", "ch4"])
def test_width_invariance_holds_with_fumes_own_pairing(driver: str):
    """The same check through fume.data.pairing (pairs within pH and class, the rarer gas reused,
    some recordings filmed with CO2 only), as a real test split is paired."""
    import pandas as pd

    from fume.data.pairing import pair_table

    def width(copies: int, seed: int) -> float:
        rng = np.random.default_rng(seed)
        rows = []
        for r in range(60):
            cls, ph = r % 3, (6.5, 5.9, 5.0)[r % 3] - 0.3 * ((r // 3) % 2)
            for gas in ("co2",) if rng.random() < 0.3 else ("co2", "ch4"):
                rows += [{"frame_path": f"{gas}/{r}_{a}.png", "mask_path": f"m/{gas}/{r}_{a}.png", "gas_type": gas, "ph_value": ph,
                          "class_name": str(cls), "class_id": cls, "original_sample_id": f"r{r}", "augmentation_id": a}
                         for a in range(1 + copies)]
        table = pd.DataFrame(rows)
        pairs = pair_table(table, "random", seed)
        recording = dict(zip(table["frame_path"], table["original_sample_id"]))
        co2, ch4 = ([recording.get(f, "") for f in pairs[f"{g}_frame"]] for g in ("co2", "ch4"))
        deciding = np.array([int(r[1:]) if r else -1 for r in (co2 if driver == "co2" else ch4)])
        right_a, right_b = rng.random(60) < 0.8, rng.random(60) < 0.65
        y = pairs["class_id"].to_numpy()
        a = np.where((deciding < 0) | right_a[np.maximum(deciding, 0)], y, (y + 1) % 3)
        b = np.where((deciding < 0) | right_b[np.maximum(deciding, 0)], y, (y + 2) % 3)
        interval = recording_bootstrap([balanced_accuracy_stat(y, a, 3)], [balanced_accuracy_stat(y, b, 3)],
                                       RecordingIndex.from_ids(co2, ch4), resamples=500, seed=1)
        return interval.high - interval.low

    none, ten = (np.mean([width(copies, seed) for seed in (0, 1)]) for copies in (0, 10))
    assert ten == pytest.approx(none, rel=0.25)
