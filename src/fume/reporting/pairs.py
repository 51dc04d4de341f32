"""Per-test-pair statistics of one run, for the recording-level bootstrap (fume.reporting.stats):
true and predicted class and the recordings of each pair's frames from predictions.csv, and
per-class pixel intersections and unions of each pair's CO2 and CH4 frame from the saved
predicted masks against the ground-truth masks, at native resolution. A frame used by several
pairs is counted on the first of them only (zeros on the others), as the evaluation does.

Recordings come from predictions.csv's co2_recording / ch4_recording; an older predictions.csv
without them is completed from the dataset's annotations (fume.evaluation.analyses.add_recordings).

Cached as RUN_DIR/test/pair_stats.v2.npz (recomputed when predictions.csv is newer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fume.contract import GASES
from fume.errors import DataError
from fume.io import write_with
from fume.reporting.stats import RecordingIndex

CACHE_FILE = "pair_stats.v2.npz"


@dataclass
class PairStats:
    sample_ids: np.ndarray  # (N,) str
    y_true: np.ndarray  # (N,) int
    y_pred: np.ndarray | None  # (N,) int; None when the model does not classify
    co2_recording: np.ndarray  # (N,) str, '' for an absent gas
    ch4_recording: np.ndarray
    gas_intersection: np.ndarray | None  # (N, 2, C) pixels of the CO2 and CH4 frame; None when the model does not segment
    gas_union: np.ndarray | None

    @property
    def intersection(self) -> np.ndarray | None:
        """(N, C): both gases summed."""
        return None if self.gas_intersection is None else self.gas_intersection.sum(1)

    @property
    def union(self) -> np.ndarray | None:
        return None if self.gas_union is None else self.gas_union.sum(1)

    @property
    def recordings(self) -> RecordingIndex:
        return RecordingIndex.from_ids(self.co2_recording, self.ch4_recording)

    def aligned(self, order: np.ndarray) -> PairStats:
        """The same statistics in the pair order `order` (sample ids); a DataError when the sets differ."""
        index = pd.Index(self.sample_ids)
        if len(order) != len(index) or not index.isin(order).all():
            raise DataError("the runs were tested on different pairs; a paired comparison needs the same test split")
        return self.take(index.get_indexer(order))

    def take(self, where: np.ndarray) -> PairStats:
        pick = (lambda a: None if a is None else a[where])
        return PairStats(self.sample_ids[where], self.y_true[where], pick(self.y_pred), self.co2_recording[where],
                         self.ch4_recording[where], pick(self.gas_intersection), pick(self.gas_union))

    @staticmethod
    def concat(parts: list[PairStats], prefixes: list[str]) -> PairStats:
        """Several test sets as one (e.g. the folds of a cross-validation); sample ids get `prefixes`."""
        def join(name: str):
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        ids = np.concatenate([np.char.add(prefix, p.sample_ids.astype(str)) for prefix, p in zip(prefixes, parts)])
        return PairStats(ids, join("y_true"), join("y_pred"), join("co2_recording"), join("ch4_recording"),
                         join("gas_intersection"), join("gas_union"))


def mask_counts(pred: np.ndarray, true: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class intersection and union pixel counts of two label images of the same shape."""
    if pred.shape != true.shape:
        raise DataError(f"predicted mask has shape {pred.shape} but the ground truth {true.shape}")
    classes = np.arange(num_classes)[:, None]
    p, t = pred.reshape(1, -1) == classes, true.reshape(1, -1) == classes
    return (p & t).sum(1), (p | t).sum(1)


def _dataset_root(run_dir: Path) -> Path:
    from fume.config import load_config

    return Path(load_config(run_dir / "config.yaml").data.dataset_root)


def _text(table: pd.DataFrame, column: str) -> np.ndarray:
    return table[column].fillna("").astype(str).to_numpy() if column in table else np.full(len(table), "", dtype=object)


def compute_pair_stats(run_dir: str | Path, num_seg_classes: int = 3) -> PairStats:
    from fume.data.frames import load_mask
    from fume.evaluation.analyses import RECORDING_COLUMNS, add_recordings

    run_dir = Path(run_dir)
    test_dir = run_dir / "test"
    predictions = test_dir / "predictions.csv"
    if not predictions.is_file():
        raise DataError(f"{predictions} not found; the run has no test predictions (fume evaluate --save-masks)")
    table = pd.read_csv(predictions, keep_default_na=False, na_values=[""], dtype={"sample_id": str, **{c: str for c in RECORDING_COLUMNS}})
    if not all(c in table for c in RECORDING_COLUMNS):
        table, why_not = add_recordings(table, _dataset_root(run_dir))
        if why_not:
            raise DataError(f"{predictions}: {why_not}")
    y_pred = None
    if "pred_class_id" in table and table["pred_class_id"].notna().all():
        y_pred = table["pred_class_id"].to_numpy(dtype=int)
    inter = union = None
    mask_columns = [f"{gas}_pred_mask" for gas in GASES]
    if all(c in table for c in mask_columns) and table[mask_columns].notna().any().any():
        root = _dataset_root(run_dir)
        inter = np.zeros((len(table), len(GASES), num_seg_classes), dtype=np.int64)
        union = np.zeros_like(inter)
        for g, gas in enumerate(GASES):
            frames = table[f"{gas}_frame"].fillna("").astype(str)
            first = ~frames.duplicated() & (frames != "")
            for i in np.flatnonzero(first.to_numpy()):
                pred_rel, true_rel = table[f"{gas}_pred_mask"].iloc[i], table[f"{gas}_mask"].iloc[i]
                if not isinstance(pred_rel, str) or not pred_rel:
                    continue  # gas absent from this pair
                inter[i, g], union[i, g] = mask_counts(load_mask(test_dir / pred_rel), load_mask(root / true_rel), num_seg_classes)
    return PairStats(table["sample_id"].to_numpy(dtype=str), table["class_id"].to_numpy(dtype=int), y_pred,
                     _text(table, "co2_recording"), _text(table, "ch4_recording"), inter, union)


def load_pair_stats(run_dir: str | Path, num_seg_classes: int = 3) -> PairStats:
    """compute_pair_stats with a cache beside predictions.csv."""
    test_dir = Path(run_dir) / "test"
    cache = test_dir / CACHE_FILE
    predictions = test_dir / "predictions.csv"
    if cache.is_file() and predictions.is_file() and cache.stat().st_mtime >= predictions.stat().st_mtime:
        with np.load(cache, allow_pickle=False) as data:
            get = (lambda k: data[k] if k in data.files else None)
            return PairStats(data["sample_ids"], data["y_true"], get("y_pred"), data["co2_recording"], data["ch4_recording"],
                             get("gas_intersection"), get("gas_union"))
    stats = compute_pair_stats(run_dir, num_seg_classes)
    arrays = {k: (v.astype(str) if v.dtype == object else v) for k, v in vars(stats).items() if v is not None}
    write_with(cache, lambda tmp: np.savez(tmp, **arrays))
    return stats
