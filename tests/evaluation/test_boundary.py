"""HD95 / ASD against a brute-force numpy computation and a case worked out by hand."""

import math

import numpy as np
import pytest

from fume.evaluation.boundary import boundary_scores, hd95_asd, mask_boundary


def brute_force_boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask (outside the image counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def brute_force_hd95_asd(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    a = np.argwhere(brute_force_boundary(pred)).astype(float)
    b = np.argwhere(brute_force_boundary(target)).astype(float)
    pairwise = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # every pair of boundary pixels
    pooled = np.concatenate([pairwise.min(1), pairwise.min(0)])
    return float(np.percentile(pooled, 95)), float(pooled.mean())


def test_concentric_squares_by_hand():
    # Inner 4x4 square inside an 8x8 square, 2 pixels margin all round.
    target = np.zeros((12, 12), bool)
    target[2:10, 2:10] = True
    pred = np.zeros((12, 12), bool)
    pred[4:8, 4:8] = True
    # The 12 inner boundary pixels are each 2 from the outer ring. Of the 28 outer-ring pixels, 16
    # face the inner square (distance 2), 8 are one step past its corner (sqrt(5)) and the 4
    # corners are sqrt(8) away. Pooled: 28 x 2, 8 x sqrt 5, 4 x sqrt 8 (40 values).
    asd = (28 * 2 + 8 * math.sqrt(5) + 4 * math.sqrt(8)) / 40
    # 95th percentile: position 0.95 * 39 = 37.05 of the sorted values, i.e. among the sqrt(8)s.
    hd95 = math.sqrt(8)
    got = hd95_asd(pred, target)
    assert got == pytest.approx((hd95, asd), rel=1e-9)
    assert hd95_asd(target, pred) == pytest.approx((hd95, asd), rel=1e-9)  # symmetric


def test_parallel_bars_shifted_by_k():
    for k in (1, 2, 5):
        a = np.zeros((10, 12), bool)
        a[1:9, 2:4] = True  # a bar two pixels wide: every pixel is on its boundary
        b = np.roll(a, k, axis=1)  # columns 2+k and 3+k
        # Row by row, a's column 2 is k from b's column 2+k and a's column 3 is k-1 away; the same
        # the other way. Pooled: half k, half k-1 -> ASD k - 1/2, 95th percentile k.
        assert hd95_asd(a, b) == pytest.approx((k, k - 0.5), rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_random_blobs_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = (20, 24)
    pred = rng.random(shape) < 0.3
    target = rng.random(shape) < 0.25
    # Grow some structure so masks are not only isolated pixels.
    pred[5:12, 3:15] = True
    target[8:16, 10:20] = True
    np.testing.assert_array_equal(mask_boundary(pred), brute_force_boundary(pred))
    assert hd95_asd(pred, target) == pytest.approx(brute_force_hd95_asd(pred, target), rel=1e-9)


def test_empty_mask_is_undefined_and_bad_shapes_raise():
    full = np.ones((5, 5), bool)
    empty = np.zeros((5, 5), bool)
    assert hd95_asd(full, empty) is None
    assert hd95_asd(empty, full) is None
    assert hd95_asd(full, full) == (0.0, 0.0)
    with pytest.raises(ValueError, match=r"prediction shape \(5, 5\) differs from ground-truth shape \(5, 4\)"):
        hd95_asd(full, np.ones((5, 4), bool))


def test_a_missed_plume_gets_the_diagonal_and_two_empty_masks_are_excluded():
    empty = np.zeros((6, 8), bool)
    plume = empty.copy()
    plume[2:4, 3:6] = True
    assert boundary_scores(empty, plume) == ((10.0, 10.0), "penalised")  # sqrt(6^2 + 8^2)
    assert boundary_scores(plume, empty) == ((10.0, 10.0), "penalised")
    assert boundary_scores(empty, empty) == (None, "excluded")
    assert boundary_scores(plume, plume) == ((0.0, 0.0), "measured")
