"""The evaluation engine: run one or more Predictors over a paired table, score them against the
ground truth at the frames' native resolution, and return one record per pair.

The predictions come from fume.inference's one path (fume.inference.engine: frames resized to the
model as in training, logits resized back bilinearly, argmax), so `fume evaluate`, `fume predict` on
the same table and export's fp32 / int8 check see the same probabilities and masks. Frames and
masks are read once per pair and shared by every predictor.

Each frame once: a frame used by several pairs (the rarer gas is reused when pairing) is scored
for segmentation only on the first pair, in table order, that uses it (with fusion its predicted
mask can depend on its partner; the first is taken), so pooled and per-gas segmentation metrics
weigh every distinct frame equally (`num_frames_co2`, `num_frames_ch4`). Classification is scored
per pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fume.contract import GASES, MASK_CLASS_NAMES, NUM_SEG_CLASSES, probability_columns
from fume.data.layout import PAIRED_WHO_WHEN_COLUMNS
from fume.evaluation.analyses import RECORDING_COLUMNS, area_columns, off_by_two_rate
from fume.evaluation.calibration import brier_score, expected_calibration_error
from fume.evaluation.metrics import METRIC_KEYS, ClassificationMetrics, SegmentationMetrics, joint_score
from fume.inference.engine import LoadedPair, load_batches, pairs_from_table, predict_loaded
from fume.inference.predictor import PairPrediction, Predictor

# Columns of the paired table that a record of a pair repeats.
PAIR_COLUMNS = ["sample_id", "co2_frame", "co2_mask", "ch4_frame", "ch4_mask", "ph_value", "class_id"]
# The predicted-plume columns of a record: gas pixels of the ground truth and of the prediction.
AREA_COLUMNS = [c for gas in GASES for c in area_columns(gas)]


@dataclass
class Evaluation:
    """Metrics (every METRIC_KEYS key, null where undefined) and one record per pair."""

    metrics: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)


class Scorer:
    """Segmentation metrics (per gas and pooled, with boundary distances) and classification metrics
    of a stream of predictions against their ground truth."""

    def __init__(self, class_names: list[str], boundary: bool = True) -> None:
        self.class_names = list(class_names)
        self.seg = SegmentationMetrics(num_classes=NUM_SEG_CLASSES, boundary=boundary)
        self.cls = ClassificationMetrics(num_classes=len(class_names), class_names=class_names)
        self.has_seg = self.has_cls = False
        self.count = 0
        self.frames: dict[str, set[str]] = {gas: set() for gas in GASES}  # frames scored, by path
        self.probabilities: list[np.ndarray] = []
        self.targets: list[int] = []

    def add(self, pair: LoadedPair, prediction: PairPrediction) -> None:
        self.count += 1
        if prediction.probabilities is not None:
            self.cls.update(torch.from_numpy(prediction.probabilities[None]), torch.tensor([pair.pair.class_id]))
            self.probabilities.append(np.asarray(prediction.probabilities, dtype=float))
            self.targets.append(int(pair.pair.class_id))
            self.has_cls = True
        for gas in GASES:
            predicted, truth = prediction.gases[gas].mask, pair.masks[gas]
            frame = str(getattr(pair.pair, gas))
            if predicted is None or truth is None or frame in self.frames[gas]:
                continue
            self.frames[gas].add(frame)
            self.seg.update(torch.from_numpy(predicted.astype(np.int64))[None], torch.from_numpy(truth.astype(np.int64))[None], gas)
            self.has_seg = True

    def compute(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {key: None for key in METRIC_KEYS}
        if self.has_seg:
            metrics.update(self.seg.compute())
        if self.has_cls:
            metrics.update(self.cls.compute())
            metrics["off_by_two_rate"] = off_by_two_rate(np.asarray(metrics["confusion_matrix"]))
            probs, targets = np.stack(self.probabilities), np.asarray(self.targets)
            metrics["ece"] = expected_calibration_error(probs, targets)
            metrics["brier"] = brier_score(probs, targets)
        for gas in GASES:
            metrics[f"num_frames_{gas}"] = len(self.frames[gas])
        if self.has_seg and self.has_cls:
            metrics["joint_score"] = joint_score(metrics["miou"], metrics["balanced_accuracy"])
        metrics["num_samples"] = self.count
        return metrics


def record_of(pair: LoadedPair, prediction: PairPrediction, class_names: list[str], gas_class: int = MASK_CLASS_NAMES.index("gas")) -> dict[str, Any]:
    """The predictions.csv row of a pair: its table columns (with the frames' recordings when the
    table has them), the predicted class and probabilities, and the true and predicted plume area
    of each gas (gas pixels at native resolution; empty for an absent gas)."""
    row = pair.pair.row
    record = {column: row.get(column) for column in PAIR_COLUMNS}
    record["class_id"] = int(record["class_id"])
    # Who and when (animal_id, co2_/ch4_session_id, co2_/ch4_timestamp) and recordings, only when the table has them.
    record.update({column: row[column] for column in [*PAIRED_WHO_WHEN_COLUMNS, *RECORDING_COLUMNS] if column in row})
    if prediction.probabilities is not None:
        record["pred_class_id"] = prediction.class_id
        record.update({c: float(p) for c, p in zip(probability_columns(class_names), prediction.probabilities)})
    for gas in GASES:
        true_col, pred_col = area_columns(gas)
        truth, predicted = pair.masks.get(gas), prediction.gases[gas].mask
        record[true_col] = int((truth == gas_class).sum()) if truth is not None else None
        record[pred_col] = int((predicted == gas_class).sum()) if predicted is not None else None
    return record


def evaluate_predictors(
    predictors: dict[str, Predictor],
    table: pd.DataFrame,
    root: str | Path,
    batch_size: int = 8,
    boundary: bool = True,
    on_pair: Callable[[str, LoadedPair, PairPrediction], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Evaluation]:
    """Score each predictor on every pair of `table` (a paired table, paths relative to `root`).

    With several predictors, each one's metrics also say how often it agrees with the first
    (`same_class_as_<first>`, `same_pixel_as_<first>`). `on_pair(name, pair, prediction)` sees every
    prediction (to save masks or pick figures); `progress(n)` follows each batch of n pairs.
    """
    if not predictors:
        raise ValueError("evaluate_predictors needs at least one predictor")
    first = next(iter(predictors))
    names = list(next(iter(predictors.values())).label_config.class_names)
    scorers = {name: Scorer(names, boundary) for name in predictors}
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in predictors}
    agree = {name: np.zeros(4, np.int64) for name in predictors}  # same class, pairs, same pixels, pixels
    window = predictors[first].frame_window  # export's fp32 / int8 check: one model, one window
    for batch in load_batches(pairs_from_table(table, root), batch_size, with_masks=True, window=window):
        reference: list[PairPrediction] | None = None
        for name, predictor in predictors.items():
            predictions = predict_loaded(predictor, batch)
            reference = reference or predictions
            for pair, prediction, ref in zip(batch, predictions, reference):
                scorers[name].add(pair, prediction)
                records[name].append(record_of(pair, prediction, names))
                _count_agreement(agree[name], prediction, ref)
                if on_pair is not None:
                    on_pair(name, pair, prediction)
        if progress is not None:
            progress(len(batch))
    results = {}
    for name in predictors:
        metrics = scorers[name].compute()
        if len(predictors) > 1:
            same = agree[name]
            if scorers[name].has_cls:
                metrics[f"same_class_as_{first}"] = float(same[0] / max(1, same[1]))
            if scorers[name].has_seg:
                metrics[f"same_pixel_as_{first}"] = float(same[2] / max(1, same[3]))
        results[name] = Evaluation(metrics, records[name])
    return results


def _count_agreement(counts: np.ndarray, prediction: PairPrediction, reference: PairPrediction) -> None:
    if prediction.probabilities is not None and reference.probabilities is not None:
        counts[:2] += (prediction.class_id == reference.class_id, 1)
    for gas in GASES:
        mine, theirs = prediction.gases[gas].mask, reference.gases[gas].mask
        if mine is not None and theirs is not None:
            counts[2:] += (int((mine == theirs).sum()), mine.size)
