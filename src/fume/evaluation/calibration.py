"""Calibration of the class probabilities: expected calibration error, Brier score, reliability
bins, and temperature scaling.

- ECE: 15 equal-width bins of the top probability on [0, 1] (a value of exactly 1 falls in the
  last bin); ECE = sum over bins of (pairs in bin / all pairs) x |accuracy - mean top probability|.
- Brier: the multi-class Brier score, mean over pairs of sum_k (p_k - y_k)^2 (0 best, 2 worst).
- Temperature scaling (Guo et al. 2017): one T > 0 with probabilities softmax(logits / T), fitted
  by minimising the negative log-likelihood on the validation split. It changes no argmax, so no
  predicted class. Logits are recovered from probabilities as log p (softmax is invariant to the
  constant that is lost), so a temperature can be fitted to any model's stored probabilities.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def _check(probs: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, y_true = np.asarray(probs, dtype=float), np.asarray(y_true, dtype=int)
    if probs.ndim != 2 or len(probs) != len(y_true):
        raise ValueError(f"probabilities of shape {probs.shape} do not match {len(y_true)} true classes; expected (N, C)")
    return probs, y_true


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of the top probability: (count, accuracy, mean confidence); NaN for an empty bin."""
    probs, y_true = _check(probs, y_true)
    confidence = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, correct, bins) / count
        mean_confidence = np.bincount(which, confidence, bins) / count
    return count, accuracy, mean_confidence


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    count, accuracy, confidence = reliability_bins(probs, y_true, bins)
    if count.sum() == 0:
        return float("nan")
    used = count > 0
    return float(np.sum(count[used] / count.sum() * np.abs(accuracy[used] - confidence[used])))


def brier_score(probs: np.ndarray, y_true: np.ndarray) -> float:
    probs, y_true = _check(probs, y_true)
    if not len(y_true):
        return float("nan")
    onehot = np.eye(probs.shape[1])[y_true]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), row by row (T = 1 gives p back)."""
    logits = np.log(np.clip(np.asarray(probs, dtype=float), 1e-300, None)) / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, y_true: np.ndarray) -> float:
    probs, y_true = _check(probs, y_true)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-300, None))))


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the NLL of softmax(log p / T) (a bounded 1-D search on log T)."""
    from scipy.optimize import minimize_scalar

    probs, y_true = _check(probs, y_true)
    if not len(y_true):
        raise ValueError("a temperature needs at least one validation pair")
    result = minimize_scalar(lambda log_t: negative_log_likelihood(apply_temperature(probs, np.exp(log_t)), y_true),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))
