"""Analyses of one evaluation's predictions table (the rows of predictions.csv): results per pH
level, one decision per recording, and the costly ordinal errors.

Recordings: a pair is made of a CO2 frame and a CH4 frame, usually from two different recordings
(`co2_recording`, `ch4_recording`: their `original_sample_id`). A recording's decision is the mean
class probability over every pair that uses one of its frames, and its predicted class the argmax
of that mean; every frame of a recording carries the recording's class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fume.contract import GASES, probability_columns

RECORDING_COLUMNS = [f"{gas}_recording" for gas in GASES]


def add_recordings(table: pd.DataFrame, dataset_root) -> tuple[pd.DataFrame, str | None]:
    """`table` (a paired table) with `co2_recording` and `ch4_recording` looked up from the dataset's
    annotations (frame path -> original_sample_id), and None; or the table unchanged and why not."""
    from fume.data.layout import read_annotations
    from fume.errors import FumeError

    if all(c in table for c in RECORDING_COLUMNS):
        return table, None
    try:
        annotations = read_annotations(dataset_root)
    except FumeError as err:
        return table, f"no recordings: {err}"
    lookup = dict(zip(annotations["frame_path"].astype(str), annotations["original_sample_id"].astype(str)))
    out = table.copy()
    for gas in GASES:
        frames = out[f"{gas}_frame"].fillna("").astype(str)
        out[f"{gas}_recording"] = [lookup.get(f, "") if f else "" for f in frames]
        unknown = [f for f in frames if f and f not in lookup]
        if unknown:
            return table, f"no recordings: {len(unknown)} {gas.upper()} frame(s) (e.g. {unknown[0]}) are not in the annotations of {dataset_root}"
    return out, None


def area_columns(gas: str) -> tuple[str, str]:
    """predictions.csv columns of a gas's plume area in pixels: (true, predicted)."""
    return f"{gas}_true_area_px", f"{gas}_pred_area_px"


def off_by_two_rate(confusion: np.ndarray) -> float:
    """Share of pairs predicted as the first class when the last is true or the reverse (with the
    classes in ordinal order: Healthy predicted for Acidotic or Acidotic for Healthy)."""
    cm = np.asarray(confusion, dtype=float)
    total = cm.sum()
    return float((cm[0, -1] + cm[-1, 0]) / total) if total > 0 and len(cm) > 2 else float("nan")


def _present(predictions: pd.DataFrame, gas: str) -> pd.Series:
    frames = predictions[f"{gas}_frame"]
    return frames.notna() & (frames.astype(str) != "")


def per_ph_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per pH level and gas: pairs with that gas, classification accuracy over them (NaN for a
    model that does not classify), distinct frames, and the mean true and predicted plume area
    (gas pixels at native resolution) over the distinct frames (a frame reused by several pairs
    counts once, from the first pair that uses it)."""
    rows = []
    classify = "pred_class_id" in predictions and predictions["pred_class_id"].notna().any()
    for gas in GASES:
        part = predictions[_present(predictions, gas)]
        true_col, pred_col = area_columns(gas)
        for ph, group in part.groupby("ph_value", sort=True):
            frames = group.drop_duplicates(f"{gas}_frame")
            correct = (group["pred_class_id"] == group["class_id"]) if classify else None
            rows.append({
                "ph_value": float(ph), "gas": gas, "pairs": len(group), "frames": len(frames),
                "accuracy": float(correct.mean()) if correct is not None else np.nan,
                "true_mean_area_px": float(frames[true_col].mean()) if true_col in frames else np.nan,
                "pred_mean_area_px": float(frames[pred_col].mean()) if pred_col in frames and frames[pred_col].notna().any() else np.nan,
            })
    columns = ["ph_value", "gas", "pairs", "frames", "accuracy", "true_mean_area_px", "pred_mean_area_px"]
    return pd.DataFrame(rows, columns=columns)


def recording_decisions(predictions: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """One row per recording: its class, how many pairs use it, the mean probability of each class
    over those pairs and the predicted class (see the module docstring)."""
    prob_cols = probability_columns(class_names)
    parts = []
    for gas in GASES:
        column = f"{gas}_recording"
        if column not in predictions:
            continue
        used = predictions[predictions[column].notna() & (predictions[column].astype(str) != "")]
        parts.append(used[[column, "class_id", *prob_cols]].rename(columns={column: "recording"}))
    if not parts:
        return pd.DataFrame(columns=["recording", "class_id", "pairs", *prob_cols, "pred_class_id"])
    stacked = pd.concat(parts, ignore_index=True)
    stacked["recording"] = stacked["recording"].astype(str)
    classes = stacked.groupby("recording")["class_id"].nunique()
    if (classes > 1).any():
        from fume.errors import DataError

        raise DataError(f"recording(s) {list(classes[classes > 1].index[:5])} carry more than one class; a recording has one label")
    table = stacked.groupby("recording", sort=True).agg(class_id=("class_id", "first"), pairs=("class_id", "size"),
                                                         **{c: (c, "mean") for c in prob_cols}).reset_index()
    table["pred_class_id"] = table[prob_cols].to_numpy().argmax(1) if len(table) else []
    return table


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """sklearn's balanced accuracy (mean recall over the classes present in y_true)."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else float("nan")
