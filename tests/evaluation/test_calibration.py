"""Calibration helpers against hand-computed values and a brute-force search."""

import numpy as np
import pytest

from fume.evaluation.analyses import off_by_two_rate
from fume.evaluation.calibration import apply_temperature, brier_score, expected_calibration_error, fit_temperature


def test_ece_and_brier_by_hand():
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    y = np.array([0, 1, 0, 2])
    # Bins of width 1/15: 0.9 -> bin 13 (accuracy 1/2, confidence 0.9); 0.5 -> bin 7 (1, 0.5); 0.6 -> bin 9 (1, 0.6).
    assert expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.4 + 0.25 * 0.5 + 0.25 * 0.4)
    brier = [0.01 + 0.0025 + 0.0025, 0.81 + 0.9025 + 0.0025, 0.25 + 0.09 + 0.04, 0.04 + 0.04 + 0.16]
    assert brier_score(probs, y) == pytest.approx(np.mean(brier))


def test_temperature_fit_matches_a_grid_search_and_keeps_the_argmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3)) * 4  # over-confident
    y = np.where(rng.random(200) < 0.6, logits.argmax(1), rng.integers(0, 3, 200))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    t = fit_temperature(probs, y)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    nll = [-np.mean(np.log(apply_temperature(probs, g)[np.arange(200), y])) for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(nll))], rel=5e-3)
    assert t > 1  # over-confident logits are softened
    assert (apply_temperature(probs, t).argmax(1) == probs.argmax(1)).all()
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, rtol=1e-9)


def test_off_by_two_rate_counts_healthy_acidotic_swaps_only():
    cm = np.array([[5, 1, 2], [1, 3, 1], [4, 0, 3]])
    assert off_by_two_rate(cm) == pytest.approx(6 / 20)
