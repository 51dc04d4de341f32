"""Many pairs through one Predictor: the path `fume predict` (folders and paired CSVs), `fume
evaluate` and export's accuracy check share. Frames (and, for scoring, their masks) are read in a
worker thread one batch ahead of the model, so reading and inference overlap.

Where the intensity window needs a recording's range (fume.data.window), the frames of each
recording are sampled for it before the first batch. A pair names its frames' recordings: a paired
table's co2_recording / ch4_recording, a folder's frames of one gas in one sub-folder; a frame with
no recording is its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fume.config import FrameWindowConfig
from fume.contract import GASES
from fume.data.frames import load_frame, load_labelled_frame, stored_bit_depth
from fume.data.window import Range, recording_key, recording_ranges
from fume.errors import DataError
from fume.inference.predictor import PairPrediction, Predictor


@dataclass
class PairInput:
    """One pair to predict: frame paths (None for an absent gas), and from a paired table also the
    true class, the mask paths and the table row."""

    sample_id: str
    co2: Path | None
    ch4: Path | None
    class_id: int | None = None
    masks: dict[str, Path | None] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)
    recordings: dict[str, str] = field(default_factory=dict)  # gas -> recording id, where known


@dataclass
class LoadedPair:
    pair: PairInput
    frames: dict[str, np.ndarray | None]
    masks: dict[str, np.ndarray | None]  # native ground truth; empty unless asked for
    ranges: tuple[Range | None, Range | None] = (None, None)  # CO2, CH4 recording ranges (fume.data.window)


def pairs_from_table(
    table: pd.DataFrame, root: str | Path, source: str = "paired table", allow_outside_root: bool | None = None
) -> list[PairInput]:
    """The pairs of a paired table (fume.data.dataset.read_paired_table), paths resolved by
    fume.data.layout.resolve_table_path against `root` and the table's folder (attrs["csv_dir"])."""
    from fume.data.layout import resolve_table_path

    csv_dir = table.attrs.get("csv_dir")
    pairs = []
    for i, row in enumerate(table.to_dict("records")):
        def resolve(column: str) -> Path | None:
            where = f"{source} row {i + 2}"
            return resolve_table_path(row[column], csv_dir, root, allow_outside_root, where, must_exist=False)

        paths = {gas: resolve(f"{gas}_frame") for gas in GASES}
        if not any(paths.values()):
            raise DataError(f"{source}: sample {row['sample_id']!r} has neither a CO2 nor a CH4 frame")
        masks = {gas: resolve(f"{gas}_mask") for gas in GASES}
        recordings = {gas: str(row.get(f"{gas}_recording") or "") for gas in GASES}
        recordings = {gas: rec for gas, rec in recordings.items() if rec and rec != "nan"}
        pairs.append(PairInput(str(row["sample_id"]), paths["co2"], paths["ch4"], int(row["class_id"]), masks, row, recordings))
    return pairs


def load(pair: PairInput, with_masks: bool) -> LoadedPair:
    frames: dict[str, np.ndarray | None] = {}
    masks: dict[str, np.ndarray | None] = {}
    for gas in GASES:
        path = getattr(pair, gas)
        if path is None:
            frames[gas] = masks[gas] = None
        elif with_masks:
            if pair.masks.get(gas) is None:
                raise DataError(f"pair {pair.sample_id!r} has a {gas.upper()} frame but no {gas}_mask to score it against")
            frames[gas], masks[gas] = load_labelled_frame(path, pair.masks[gas])
        else:
            frames[gas] = load_frame(path)
    return LoadedPair(pair, frames, masks)


def pair_recording_ranges(pairs: Sequence[PairInput], window: FrameWindowConfig) -> dict[str, Range]:
    """{recording_key: range} for the recordings of `pairs` whose window needs a range."""
    recordings: dict[str, set[Path]] = {}
    for pair in pairs:
        for gas in GASES:
            path, recording = getattr(pair, gas), pair.recordings.get(gas)
            if path is not None and recording:
                recordings.setdefault(recording_key(gas, recording), set()).add(path)
    frames = {key: sorted(paths) for key, paths in recordings.items()}
    return recording_ranges(frames, window, load_frame, lambda path: stored_bit_depth(path) == "8-bit")


def load_batches(
    pairs: Sequence[PairInput], batch_size: int, with_masks: bool = False, window: FrameWindowConfig | None = None
) -> Iterator[list[LoadedPair]]:
    """Batches of loaded pairs, each read while the caller works on the previous one. With the
    predictor's `window`, each pair carries its recordings' ranges where the window needs them."""
    chunks = [pairs[i : i + max(1, batch_size)] for i in range(0, len(pairs), max(1, batch_size))]
    ranges = pair_recording_ranges(pairs, window) if window is not None else {}

    def read(chunk: Sequence[PairInput]) -> list[LoadedPair]:
        loaded = [load(p, with_masks) for p in chunk]
        for item in loaded:
            keys = [recording_key(gas, item.pair.recordings[gas]) if gas in item.pair.recordings else None for gas in GASES]
            item.ranges = tuple(ranges.get(key) for key in keys)
        return loaded

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fume-read") as pool:
        pending = pool.submit(read, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            batch = pending.result()
            pending = pool.submit(read, chunks[i + 1]) if i + 1 < len(chunks) else None
            yield batch


def predict_loaded(predictor: Predictor, batch: list[LoadedPair]) -> list[PairPrediction]:
    """One forward pass over a loaded batch; each gas's result names the file it came from."""
    sources = [tuple(str(p) if p is not None else None for p in (b.pair.co2, b.pair.ch4)) for b in batch]
    return predictor.predict_batch([(b.frames["co2"], b.frames["ch4"], b.pair.sample_id) for b in batch], sources, [b.ranges for b in batch])
