"""A simple baseline for every report: logistic regression on the plume areas of both gases.

The label physics is that the release rate, and so the plume's area, follows pH. A classifier that
sees only the two areas shows what that cue alone gives:

- from the ground-truth masks: the ceiling of an area-only decision;
- from a model's predicted masks: a two-stage baseline (segment, then classify the areas).

Features of a pair: the gas area of its CO2 and of its CH4 frame as a fraction of the frame, and
whether each gas is present (an absent gas has area 0 and flag 0). The classifier (scikit-learn:
standardised features, multinomial logistic regression with balanced class weights, as the
balanced accuracy it is judged by) is fitted on the training split's ground-truth areas; the
two-stage variant applies it to the predicted areas of the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fume.contract import GASES, MASK_CLASS_NAMES

GAS_CLASS = MASK_CLASS_NAMES.index("gas")


def mask_area_fraction(path: Path | None) -> float:
    """Share of a mask's pixels that are gas; NaN without a mask."""
    from fume.data.frames import load_mask

    if path is None:
        return float("nan")
    mask = load_mask(path)
    return float((mask == GAS_CLASS).mean())


def area_features(co2: np.ndarray, ch4: np.ndarray) -> np.ndarray:
    """(N, 4): CO2 area, CH4 area, CO2 present, CH4 present (NaN area = absent gas)."""
    co2, ch4 = np.asarray(co2, dtype=float), np.asarray(ch4, dtype=float)
    return np.column_stack([np.nan_to_num(co2), np.nan_to_num(ch4), np.isfinite(co2), np.isfinite(ch4)]).astype(float)


def fit_area_classifier(features: np.ndarray, classes: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")).fit(features, classes)


def table_areas(table: pd.DataFrame, root: Path, mask_columns: tuple[str, str] = ("co2_mask", "ch4_mask"),
                base: tuple[Path, Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gas area fractions of each row's CO2 and CH4 mask (columns `mask_columns`, paths relative to
    `root`, or to base[i] for column i)."""
    out = []
    for i, column in enumerate(mask_columns):
        folder = base[i] if base is not None else root
        values = table[column].fillna("").astype(str) if column in table else pd.Series("", index=table.index)
        out.append(np.array([mask_area_fraction(folder / v) if v else np.nan for v in values]))
    return out[0], out[1]


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """The classification keys of metrics.json, by scikit-learn."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score

    from fume.contract import key_name

    labels = list(range(len(class_names)))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    scores = {"accuracy": accuracy_score(y_true, y_pred), "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
              "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
              "weighted_f1": f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0),
              "cohens_kappa": cohen_kappa_score(y_true, y_pred, labels=labels)}
    scores.update({f"f1_{key_name(n)}": float(v) for n, v in zip(class_names, per_class)})
    return {k: float(v) for k, v in scores.items()}


def area_baselines(train: pd.DataFrame, root: Path, predictions: pd.DataFrame, predictions_dir: Path, class_names: list[str]) -> dict[str, dict[str, float]]:
    """{"ground_truth": scores, "predicted": scores}: the area classifier fitted on `train` (a paired
    table under `root`), applied to the test pairs of `predictions` (a predictions.csv with masks
    saved under `predictions_dir`) from their ground-truth and from their predicted masks."""
    model = fit_area_classifier(area_features(*table_areas(train, root)), train["class_id"].to_numpy(int))
    y_true = predictions["class_id"].to_numpy(int)
    out = {"ground_truth": classification_scores(y_true, model.predict(area_features(*table_areas(predictions, root))), class_names)}
    if all(f"{gas}_pred_mask" in predictions for gas in GASES):
        predicted = table_areas(predictions, root, ("co2_pred_mask", "ch4_pred_mask"), (predictions_dir, predictions_dir))
        out["predicted"] = classification_scores(y_true, model.predict(area_features(*predicted)), class_names)
    return out
