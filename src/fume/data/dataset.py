"""The paired dual-gas dataset that training reads: one CO2 + CH4 sample per row of a paired table."""

from __future__ import annotations

import os
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from fume.config import FrameWindowConfig, LabelConfig
from fume.contract import GASES
from fume.data.frames import frame_to_input, load_frame, load_labelled_frame, resize_frame, resize_mask
from fume.data.layout import PAIRED_COLUMNS, PAIRED_RECORDING_COLUMNS, check_table_path, clean_path, missing_columns, read_csv, resolve_table_path
from fume.data.transforms import build_augmentation, seed_augmentation
from fume.data.window import Range, needs_recording_range, recording_key, recording_range, sample_evenly, window_frame
from fume.errors import ConfigError, DataError


def read_paired_table(table: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A paired table with paths cleaned (fume.data.layout.clean_path) and empty cells for a
    missing gas; read from a file, `attrs["csv_dir"]` is its folder (for resolve_table_path)."""
    source = "paired table" if isinstance(table, pd.DataFrame) else str(table)
    frame = table.copy() if isinstance(table, pd.DataFrame) else read_csv(table)
    absent = missing_columns(frame, PAIRED_COLUMNS)
    if absent:
        raise DataError(f"{source}: missing column(s) {absent}; expected columns {PAIRED_COLUMNS}")
    for gas in GASES:
        for column in (f"{gas}_frame", f"{gas}_mask"):
            frame[column] = frame[column].fillna("").astype(str).map(clean_path)
    frame["sample_id"] = frame["sample_id"].astype(str)
    for column in PAIRED_RECORDING_COLUMNS:  # optional (see layout.PAIRED_RECORDING_COLUMNS)
        frame[column] = frame[column].fillna("").astype(str) if column in frame.columns else ""
    frame["class_id"] = pd.to_numeric(frame["class_id"], errors="raise").astype(int)
    frame["ph_value"] = pd.to_numeric(frame["ph_value"], errors="raise").astype(float)
    frame = frame.reset_index(drop=True)
    if not isinstance(table, pd.DataFrame):
        frame.attrs["csv_dir"] = str(Path(table).parent)
    return frame


class PairedDataset(Dataset):
    """One CO2 + CH4 sample per row of a paired table.

    Item: co2_frame / ch4_frame float32 (1, H, W) in [0, 1]; co2_mask / ch4_mask int64 (H, W);
    class_label int64 and ph_value float32 scalars; modality_mask float32 [CO2 present, CH4
    present]; sample_id. A missing gas is all zeros with a 0 in the modality mask. (Scoring at
    the frames' native size goes through fume.evaluation.engine, not through this dataset.)

    Randomness (augmentation, modality dropout) comes from torch's generator, so it follows
    torch.manual_seed and differs between DataLoader workers and epochs; pass `seed` for a fixed
    draw per index (then call set_epoch to vary it between epochs).
    """

    def __init__(
        self,
        table: str | os.PathLike | pd.DataFrame,
        root: str | os.PathLike,
        image_size: tuple[int, int] | None = None,
        augment: bool | A.Compose = False,
        modality_dropout: float = 0.0,
        seed: int | None = None,
        label_config: LabelConfig = LabelConfig(),
        max_image_pixels: int | None = None,
        allow_outside_root: bool | None = None,
        frame_window: FrameWindowConfig = FrameWindowConfig(),
    ) -> None:
        if not 0.0 <= modality_dropout <= 1.0:
            raise ConfigError(f"modality_dropout must be in [0, 1], got {modality_dropout}")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise ConfigError(f"image_size must be (W, H) with positive sides, got {image_size}")
        self.root = Path(root)
        self.table = read_paired_table(table)
        self.csv_dir = self.table.attrs.get("csv_dir")
        self.allow_outside_root = allow_outside_root
        source = "paired table" if isinstance(table, pd.DataFrame) else str(table)
        for i, row in enumerate(self.table[[f"{g}_{k}" for g in GASES for k in ("frame", "mask")]].itertuples(index=False)):
            for value in row:  # absolute paths and '..' refused before the first step
                check_table_path(value, allow_outside_root, f"{source} row {i + 2}")
        self.image_size = tuple(int(v) for v in image_size) if image_size is not None else None
        self.augment = build_augmentation() if augment is True else (augment or None)
        self.modality_dropout = float(modality_dropout)
        self.seed = seed
        self.label_config = label_config
        self.max_image_pixels = max_image_pixels
        self.epoch = 0
        bad = sorted(set(self.table["class_id"]) - set(range(label_config.num_classes)))
        if bad:
            raise DataError(f"class_id values {bad} outside 0..{label_config.num_classes - 1} in the paired table")
        empty = self.table[(self.table["co2_frame"] == "") & (self.table["ch4_frame"] == "")]
        if len(empty):
            raise DataError(f"sample {empty['sample_id'].iloc[0]!r} has neither a CO2 nor a CH4 frame")
        self.frame_window = frame_window
        self.recordings: dict[str, list[tuple[int, str]]] = {}  # recording key -> its frames (row, gas)
        for i, row in self.table.iterrows():
            for gas in GASES:
                if row[f"{gas}_frame"]:
                    self.recordings.setdefault(self._recording_key(row, gas), []).append((i, gas))
        self._ranges: dict[str, Range] = {}
        if frame_window.mode == "percentile":  # every frame needs its recording's range: all read now, once
            for key in self.recordings:
                self._window_range(key)

    def _path(self, row: pd.Series, gas: str, kind: str) -> Path:
        where = f"sample {row['sample_id']!r}: {kind}"
        return resolve_table_path(row[f"{gas}_{kind}"], self.csv_dir, self.root, self.allow_outside_root, where)

    def _recording_key(self, row: pd.Series, gas: str) -> str:
        """A frame's recording (fume.data.window): its gas and recording id, else the frame itself."""
        return recording_key(gas, row[f"{gas}_recording"] or row[f"{gas}_frame"])

    def _window_range(self, key: str) -> Range:
        """The recording's intensity range, for frames whose window needs one (read on first use, then kept)."""
        if key not in self._ranges:
            paths = sorted({self._path(self.table.iloc[i], gas, "frame") for i, gas in self.recordings[key]})
            frames = (load_frame(path, self.max_image_pixels) for path in sample_evenly(paths))
            self._ranges[key] = recording_range(frames, self.frame_window, f"recording {key}")
        return self._ranges[key]

    def __len__(self) -> int:
        return len(self.table)

    def set_epoch(self, epoch: int) -> None:
        """With a fixed `seed`, vary the random draws between epochs."""
        self.epoch = int(epoch)

    def class_counts(self) -> list[int]:
        counts = np.bincount(self.table["class_id"].to_numpy(), minlength=self.label_config.num_classes)
        return [int(c) for c in counts]

    def sample_weights(self) -> torch.Tensor:
        """Inverse class frequency per sample, for torch.utils.data.WeightedRandomSampler."""
        counts = np.asarray(self.class_counts(), dtype=np.float64)
        return torch.as_tensor(1.0 / counts[self.table["class_id"].to_numpy()], dtype=torch.double)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            entropy = int(torch.randint(0, 2**62, (1,)).item())
            return np.random.default_rng(entropy)
        return np.random.default_rng([self.seed, self.epoch, index])

    def _load_gas(self, row: pd.Series, gas: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        frame_path, mask_path = self._path(row, gas, "frame"), self._path(row, gas, "mask")
        frame, mask = load_labelled_frame(frame_path, mask_path, self.max_image_pixels)
        key = self._recording_key(row, gas)
        frame_range = self._window_range(key) if needs_recording_range(self.frame_window, frame.dtype == np.uint8) else None
        frame = window_frame(frame, self.frame_window, frame_range, f"frame {frame_path}")
        if self.image_size is not None:
            frame, mask = resize_frame(frame, self.image_size), resize_mask(mask, self.image_size)
        if self.augment is not None:
            seed_augmentation(self.augment, int(rng.integers(2**31)))
            out = self.augment(image=frame, mask=mask)
            frame, mask = out["image"], out["mask"]
        return frame, mask

    def __getitem__(self, index: int) -> dict:
        row = self.table.iloc[index]
        rng = self._rng(index)
        present = {gas: row[f"{gas}_frame"] != "" for gas in GASES}
        if self.modality_dropout > 0 and all(present.values()) and rng.random() < self.modality_dropout:
            present[GASES[int(rng.integers(2))]] = False
        item: dict = {}
        loaded = {gas: self._load_gas(row, gas, rng) for gas in GASES if present[gas]}
        for gas, (frame, mask) in loaded.items():
            item[f"{gas}_frame"] = torch.from_numpy(frame_to_input(frame)).unsqueeze(0)
            item[f"{gas}_mask"] = torch.from_numpy(mask.astype(np.int64))
        shape = next(iter(loaded.values()))[0].shape  # a missing gas takes the other one's shape
        for gas in GASES:
            if gas not in loaded:
                item[f"{gas}_frame"] = torch.zeros((1, *shape), dtype=torch.float32)
                item[f"{gas}_mask"] = torch.zeros(shape, dtype=torch.int64)
        item["class_label"] = torch.tensor(int(row["class_id"]), dtype=torch.int64)
        item["ph_value"] = torch.tensor(float(row["ph_value"]), dtype=torch.float32)
        item["modality_mask"] = torch.tensor([float(present[g]) for g in GASES], dtype=torch.float32)
        item["sample_id"] = str(row["sample_id"])
        return item
