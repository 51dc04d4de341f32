"""Many pairs through one Predictor: the path `fume predict` (folders and paired CSVs), `fume
evaluate` and export's accuracy check share. Frames (and, for scoring, their masks) are read in a
worker thread one batch ahead of the model, so reading and inference overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fume.contract import GASES
from fume.data.frames import load_frame, load_labelled_frame
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


@dataclass
class LoadedPair:
    pair: PairInput
    frames: dict[str, np.ndarray | None]
    masks: dict[str, np.ndarray | None]  # native ground truth; empty unless asked for


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
        pairs.append(PairInput(str(row["sample_id"]), paths["co2"], paths["ch4"], int(row["class_id"]), masks, row))
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


def load_batches(pairs: Sequence[PairInput], batch_size: int, with_masks: bool = False) -> Iterator[list[LoadedPair]]:
    """Batches of loaded pairs, each read while the caller works on the previous one."""
    chunks = [pairs[i : i + max(1, batch_size)] for i in range(0, len(pairs), max(1, batch_size))]

    def read(chunk: Sequence[PairInput]) -> list[LoadedPair]:
        return [load(p, with_masks) for p in chunk]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fume-read") as pool:
        pending = pool.submit(read, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            batch = pending.result()
            pending = pool.submit(read, chunks[i + 1]) if i + 1 < len(chunks) else None
            yield batch


def predict_loaded(predictor: Predictor, batch: list[LoadedPair]) -> list[PairPrediction]:
    """One forward pass over a loaded batch; each gas's result names the file it came from."""
    sources = [tuple(str(p) if p is not None else None for p in (b.pair.co2, b.pair.ch4)) for b in batch]
    return predictor.predict_batch([(b.frames["co2"], b.frames["ch4"], b.pair.sample_id) for b in batch], sources)
