"""Helpers for the data tests: hand-made datasets in the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fume.data.layout import ANNOTATION_COLUMNS

CLASS_OF_PH = {6.5: ("Healthy", 0), 6.2: ("Healthy", 0), 5.9: ("Transitional", 1), 5.0: ("Acidotic", 2)}


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def simple_mask(h: int = 24, w: int = 32, shift: int = 0) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[10:14, w - 6 :] = 1  # tube at the right edge
    mask[6 + shift : 18 + shift, 8 : w - 6] = 2  # gas
    return mask


def make_real_layout(root: Path, recordings: list[tuple[str, str, float]], copies: int = 2) -> pd.DataFrame:
    """A dataset written by hand as real users have it: Windows paths with the mmseg_dataset
    prefix, one row per frame. `recordings` = [(original_sample_id, gas, ph), ...]."""
    rows = []
    rng = np.random.default_rng(0)
    for sample, gas, ph in recordings:
        name, class_id = CLASS_OF_PH[ph]
        for aug in range(copies):
            rel = f"img_dir/{gas}/{sample}_{aug}.png"
            rel_mask = f"ann_dir/{gas}/{sample}_{aug}.png"
            mask = simple_mask()
            frame = (100 + 40 * (mask == 2) - 60 * (mask == 1) + rng.integers(0, 10, mask.shape)).astype(np.uint8)
            write_png(root / rel, frame)
            write_png(root / rel_mask, mask)
            rows.append(
                {
                    "frame_path": "mmseg_dataset\\" + rel.replace("/", "\\"),
                    "mask_path": "mmseg_dataset/" + rel_mask,
                    "gas_type": gas.upper() if aug else gas,
                    "ph_value": ph,
                    "class_name": name,
                    "class_id": class_id,
                    "original_sample_id": sample,
                    "augmentation_id": aug,
                }
            )
    table = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    table.to_csv(root / "annotations.csv", index=False)
    return table
