"""Per-test-pair statistics of one run, for the paired bootstrap: true and predicted class from
predictions.csv, and per-class pixel intersections and unions (both gases summed) from the saved
predicted masks against the ground-truth masks, at native resolution.

Cached as RUN_DIR/test/pair_stats.npz (recomputed when predictions.csv is newer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fume.contract import GASES
from fume.errors import DataError
from fume.io import write_with

CACHE_FILE = "pair_stats.npz"


@dataclass
class PairStats:
    sample_ids: np.ndarray  # (N,) str
    y_true: np.ndarray  # (N,) int
    y_pred: np.ndarray | None  # (N,) int; None when the model does not classify
    intersection: np.ndarray | None  # (N, C) pixels; None when the model does not segment
    union: np.ndarray | None

    def aligned(self, order: np.ndarray) -> PairStats:
        """The same statistics in the pair order `order` (sample ids); a DataError when the sets differ."""
        index = pd.Index(self.sample_ids)
        if len(order) != len(index) or not index.isin(order).all():
            raise DataError("the runs were tested on different pairs; a paired comparison needs the same test split")
        where = index.get_indexer(order)
        pick = (lambda a: None if a is None else a[where])
        return PairStats(self.sample_ids[where], self.y_true[where], pick(self.y_pred), pick(self.intersection), pick(self.union))


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


def compute_pair_stats(run_dir: str | Path, num_seg_classes: int = 3) -> PairStats:
    from fume.data.frames import load_mask

    run_dir = Path(run_dir)
    test_dir = run_dir / "test"
    predictions = test_dir / "predictions.csv"
    if not predictions.is_file():
        raise DataError(f"{predictions} not found; the run has no test predictions (fume evaluate --save-masks)")
    table = pd.read_csv(predictions, keep_default_na=False, na_values=[""], dtype={"sample_id": str})
    y_pred = None
    if "pred_class_id" in table and table["pred_class_id"].notna().all():
        y_pred = table["pred_class_id"].to_numpy(dtype=int)
    inter = union = None
    mask_columns = [f"{gas}_pred_mask" for gas in GASES]
    if all(c in table for c in mask_columns) and table[mask_columns].notna().any().any():
        root = _dataset_root(run_dir)
        inter = np.zeros((len(table), num_seg_classes), dtype=np.int64)
        union = np.zeros_like(inter)
        for i, row in enumerate(table.itertuples(index=False)):
            for gas in GASES:
                pred_rel, true_rel = getattr(row, f"{gas}_pred_mask"), getattr(row, f"{gas}_mask")
                if not isinstance(pred_rel, str) or not pred_rel:
                    continue  # gas absent from this pair
                a, b = mask_counts(load_mask(test_dir / pred_rel), load_mask(root / true_rel), num_seg_classes)
                inter[i] += a
                union[i] += b
    return PairStats(table["sample_id"].to_numpy(dtype=str), table["class_id"].to_numpy(dtype=int), y_pred, inter, union)


def load_pair_stats(run_dir: str | Path, num_seg_classes: int = 3) -> PairStats:
    """compute_pair_stats with a cache beside predictions.csv."""
    test_dir = Path(run_dir) / "test"
    cache = test_dir / CACHE_FILE
    predictions = test_dir / "predictions.csv"
    if cache.is_file() and predictions.is_file() and cache.stat().st_mtime >= predictions.stat().st_mtime:
        with np.load(cache, allow_pickle=False) as data:
            get = (lambda k: data[k] if k in data.files else None)
            return PairStats(data["sample_ids"], data["y_true"], get("y_pred"), get("intersection"), get("union"))
    stats = compute_pair_stats(run_dir, num_seg_classes)
    arrays = {k: v for k, v in vars(stats).items() if v is not None}
    write_with(cache, lambda tmp: np.savez(tmp, **arrays))
    return stats
