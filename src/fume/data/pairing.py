"""Pairing single-gas frames into dual-gas samples.

A CO2 and a CH4 frame are never filmed at the same instant, so a "pair" is a CO2 frame and a CH4
frame of the same pH and class (the label both frames carry). Two strategies:

- ``random``: within each (pH, class) group both gases are shuffled and matched. With
  ``reuse=True`` (default) every frame of the more common gas gets a partner and the rarer gas's
  frames are reused in turn (each used as evenly as possible), so no frame is wasted and most
  samples are full pairs; with ``reuse=False`` the matching is one-to-one and the surplus frames
  become single-gas samples. A group with only one gas always gives single-gas samples.
- ``original_based``: frames sharing ``original_sample_id`` and ``augmentation_id`` are paired;
  the rest become single-gas samples.

Who and when: when the tables have an `animal_id` column, frames are only paired within one
animal (the groups above become (pH, class, animal); a row with an empty `animal_id` is paired
only with other rows without one), and the paired table keeps a single `animal_id` column (both
frames agree by construction; `original_based` raises DataError when a recording's CO2 and CH4
frames name different animals). `session_id` and `timestamp` differ between the two frames of a
pair (they are never filmed at the same instant), so each becomes one column per gas:
`co2_session_id`, `ch4_session_id`, `co2_timestamp`, `ch4_timestamp` (empty for a missing gas).
These columns (layout.PAIRED_WHO_WHEN_COLUMNS) are written only when the source has them: a table
without them pairs exactly as before.

`pair_dataset` refuses (DataError naming the CSV, nothing written) when a split table has no
rows: a paired table is never written empty, as `fume split` never writes an empty split.

Unlabelled frames (an empty `mask_path`, e.g. from `fume import-recording`) cannot be trained on:
`pair_dataset` leaves them out of the paired tables and records how many in each returned table's
`attrs[UNLABELLED_ATTR]` (`fume pair` reports "N unlabelled frames left out").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fume.data.layout import (
    PAIRED_COLUMNS,
    PAIRED_RECORDING_COLUMNS,
    SPLITS,
    WHO_WHEN_COLUMNS,
    paired_table_name,
    read_annotations,
    require_rows,
    split_table_name,
    split_tables_present,
    write_root_record,
)
from fume.errors import DataError
from fume.io import write_csv

Strategy = Literal["random", "original_based"]
STRATEGIES: tuple[str, ...] = ("random", "original_based")
UNLABELLED_ATTR = "unlabelled_left_out"


def drop_unlabelled(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`table` without its unlabelled rows (empty mask_path), and how many were dropped."""
    unlabelled = table["mask_path"].astype(str).str.strip() == ""
    return table[~unlabelled].reset_index(drop=True), int(unlabelled.sum())


def _who_when(co2: pd.Series | None, ch4: pd.Series | None, present: list[str]) -> dict:
    """The paired table's who-and-when values of a pair (see the module docstring)."""
    ref = co2 if co2 is not None else ch4
    values: dict = {}
    for column in present:
        if column == "animal_id":
            values[column] = ref[column]
        else:
            for gas, row in (("co2", co2), ("ch4", ch4)):
                values[f"{gas}_{column}"] = row[column] if row is not None else ""
    return values


def who_when_columns(present: list[str]) -> list[str]:
    """The paired table's columns for the who-and-when columns `present` in an annotation table."""
    return [c for column in present for c in ([column] if column == "animal_id" else [f"co2_{column}", f"ch4_{column}"])]


def _row(co2: pd.Series | None, ch4: pd.Series | None, sample_id: str, present: list[str] = ()) -> dict:
    ref = co2 if co2 is not None else ch4
    assert ref is not None
    return {**_who_when(co2, ch4, present),
        "sample_id": sample_id,
        "co2_frame": co2["frame_path"] if co2 is not None else "",
        "co2_mask": co2["mask_path"] if co2 is not None else "",
        "ch4_frame": ch4["frame_path"] if ch4 is not None else "",
        "ch4_mask": ch4["mask_path"] if ch4 is not None else "",
        "ph_value": float(ref["ph_value"]),
        "class_id": int(ref["class_id"]),
        "class_name": ref["class_name"],
        "is_paired": co2 is not None and ch4 is not None,
        "missing_modality": "" if co2 is not None and ch4 is not None else ("ch4" if co2 is not None else "co2"),
        "co2_recording": str(co2["original_sample_id"]) if co2 is not None else "",
        "ch4_recording": str(ch4["original_sample_id"]) if ch4 is not None else "",
    }


def _match_random(co2: pd.DataFrame, ch4: pd.DataFrame, rng: np.random.Generator, reuse: bool):
    co2_rows = [co2.iloc[i] for i in rng.permutation(len(co2))]
    ch4_rows = [ch4.iloc[i] for i in rng.permutation(len(ch4))]
    if not co2_rows or not ch4_rows:
        yield from ((r, None) for r in co2_rows)
        yield from ((None, r) for r in ch4_rows)
        return
    if reuse:
        n = max(len(co2_rows), len(ch4_rows))
        yield from ((co2_rows[i % len(co2_rows)], ch4_rows[i % len(ch4_rows)]) for i in range(n))
        return
    n = min(len(co2_rows), len(ch4_rows))
    yield from zip(co2_rows[:n], ch4_rows[:n])
    yield from ((r, None) for r in co2_rows[n:])
    yield from ((None, r) for r in ch4_rows[n:])


def pair_table(
    table: pd.DataFrame,
    strategy: Strategy = "random",
    seed: int = 0,
    reuse: bool = True,
    id_prefix: str = "",
) -> pd.DataFrame:
    """Pair the rows of one normalised annotation table (see layout.read_annotations)."""
    if strategy not in STRATEGIES:
        raise DataError(f"unknown pairing strategy {strategy!r}; expected one of {list(STRATEGIES)}")
    unknown = sorted(set(table["gas_type"]) - {"co2", "ch4"})
    if unknown:
        raise DataError(f"gas_type values {unknown} cannot be paired; expected 'co2' or 'ch4'")
    present = [c for c in WHO_WHEN_COLUMNS if c in table.columns]
    table = table.assign(_ph=table["ph_value"].round(2))
    if present:
        table = table.assign(**{c: table[c].astype(str).str.strip() for c in present})
    matches = []
    if strategy == "random":
        keys = ["_ph", "class_id"] + (["animal_id"] if "animal_id" in present else [])
        groups = table.groupby(keys, sort=True)
        for g, (_, group) in enumerate(groups):
            rng = np.random.default_rng([seed, g])
            co2 = group[group["gas_type"] == "co2"]
            ch4 = group[group["gas_type"] == "ch4"]
            matches.extend(_match_random(co2, ch4, rng, reuse))
    else:
        for key, group in table.groupby(["original_sample_id", "augmentation_id"], sort=True):
            if group["_ph"].nunique() > 1 or group["class_id"].nunique() > 1:
                raise DataError(
                    f"original_sample_id {key[0]!r}, augmentation_id {key[1]} has rows of different "
                    f"pH or class: {sorted(group['_ph'].unique())}; they cannot be paired"
                )
            if "animal_id" in present and group["animal_id"].nunique() > 1:
                raise DataError(
                    f"original_sample_id {key[0]!r}, augmentation_id {key[1]} has rows of different "
                    f"animal_id: {sorted(group['animal_id'].unique())}; they cannot be paired"
                )
            co2_rows = [r for _, r in group[group["gas_type"] == "co2"].iterrows()]
            ch4_rows = [r for _, r in group[group["gas_type"] == "ch4"].iterrows()]
            n = min(len(co2_rows), len(ch4_rows))
            matches.extend(zip(co2_rows[:n], ch4_rows[:n]))
            matches.extend((r, None) for r in co2_rows[n:])
            matches.extend((None, r) for r in ch4_rows[n:])
    rows = [_row(co2, ch4, f"{id_prefix}{i:06d}", present) for i, (co2, ch4) in enumerate(matches)]
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS + PAIRED_RECORDING_COLUMNS + who_when_columns(present))


def pairing_statistics(paired: pd.DataFrame) -> dict:
    """Counts a user checks after pairing: total, full pairs, single-gas samples, by class, by pH."""
    return {
        "total": int(len(paired)),
        "paired": int(paired["is_paired"].astype(bool).sum()),
        "co2_only": int((paired["missing_modality"] == "ch4").sum()),
        "ch4_only": int((paired["missing_modality"] == "co2").sum()),
        "by_class": {str(k): int(v) for k, v in paired.groupby("class_name").size().items()},
        "by_ph": {float(k): int(v) for k, v in paired.groupby("ph_value").size().sort_index(ascending=False).items()},
    }


def pair_dataset(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    strategy: Strategy = "random",
    seed: int = 0,
    reuse: bool = True,
) -> dict[str, pd.DataFrame]:
    """Pair each split table of `root` and write `paired_{split}_annotations.csv` into `out`
    (default `root`); paths stay relative to `root`. Returns {split: paired table}."""
    root = Path(root)
    out = Path(out) if out is not None else root
    present = split_tables_present(root)
    if not present:
        names = ", ".join(split_table_name(s) for s in SPLITS)
        raise DataError(f"no split tables in {root} (expected {names}); run `fume split {root}` first")
    tables, unlabelled = {}, {}
    for split in present:  # all read and checked before any is written
        source = root / split_table_name(split)
        labelled, unlabelled[split] = drop_unlabelled(require_rows(read_annotations(root, split), source, "nothing to pair; run `fume split` again"))
        tables[split] = require_rows(labelled, source, f"all {unlabelled[split]} frames are unlabelled (no mask); nothing to pair")
    result = {split: pair_table(table, strategy, seed + i, reuse, id_prefix=f"{split}-") for i, (split, table) in enumerate(tables.items())}
    for split, paired in result.items():
        paired.attrs[UNLABELLED_ATTR] = unlabelled[split]
    for split, paired in result.items():
        write_csv(out / paired_table_name(split), paired, backup=True)
    if out.resolve() != root.resolve():  # readers of out/ find the files without --data-root
        write_root_record(out, root)
    return result
