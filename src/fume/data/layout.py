"""The real dataset layout: annotation CSVs (ANNOTATION_COLUMNS below) with paths relative to the
root, possibly written on Windows, and the paired tables (PAIRED_COLUMNS) that pairing writes and
training reads."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from fume.errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")

ANNOTATION_COLUMNS: list[str] = [
    "frame_path",
    "mask_path",
    "gas_type",
    "ph_value",
    "class_name",
    "class_id",
    "original_sample_id",
    "augmentation_id",
]

PAIRED_COLUMNS: list[str] = [
    "sample_id",
    "co2_frame",
    "co2_mask",
    "ch4_frame",
    "ch4_mask",
    "ph_value",
    "class_id",
    "class_name",
    "is_paired",
    "missing_modality",
]

ANNOTATIONS_FILE = "annotations.csv"
_WINDOWS_PREFIX = "mmseg_dataset/"


def split_table_name(split: str) -> str:
    return f"{split}_annotations.csv"


def paired_table_name(split: str) -> str:
    return f"paired_{split}_annotations.csv"


def normalise_path(path: str) -> str:
    """A CSV path as a POSIX path relative to the dataset root: backslashes become '/', a leading
    './' and a leading 'mmseg_dataset/' (the original authors' folder) are stripped."""
    path = str(path).strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    if path.startswith(_WINDOWS_PREFIX):
        path = path[len(_WINDOWS_PREFIX) :]
    return path


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV with ids kept as text (so '007' stays '007'); DataError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation table not found: {path}")
    try:
        return pd.read_csv(path, dtype={"original_sample_id": str, "sample_id": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot parse CSV {path}: {err}") from None


def missing_columns(table: pd.DataFrame, required: list[str]) -> list[str]:
    return [c for c in required if c not in table.columns]


def normalise_annotations(table: pd.DataFrame, source: str | os.PathLike) -> pd.DataFrame:
    """Paths normalised, gas names lower case, numeric columns typed. Raises DataError naming
    `source` when a required column is missing or a numeric column holds text."""
    absent = missing_columns(table, ANNOTATION_COLUMNS)
    if absent:
        raise DataError(f"{source}: missing column(s) {absent}; expected columns {ANNOTATION_COLUMNS}")
    table = table.copy()
    for column in ("frame_path", "mask_path"):
        table[column] = table[column].astype(str).map(normalise_path)
    table["gas_type"] = table["gas_type"].astype(str).str.strip().str.lower()
    table["class_name"] = table["class_name"].astype(str).str.strip()
    table["original_sample_id"] = table["original_sample_id"].astype(str).str.strip()
    for column, kind in (("ph_value", float), ("class_id", int), ("augmentation_id", int)):
        try:
            table[column] = pd.to_numeric(table[column], errors="raise").astype(kind)
        except (ValueError, TypeError) as err:
            raise DataError(f"{source}: column {column!r} must hold numbers ({err})") from None
    return table


def require_rows(table: pd.DataFrame, source: str | os.PathLike, hint: str = "") -> pd.DataFrame:
    """`table`, or DataError naming `source` when it has no rows (a header-only CSV)."""
    if table.empty:
        raise DataError(f"{source} has no rows, only a header" + (f"; {hint}" if hint else ""))
    return table


def split_tables_present(root: str | os.PathLike) -> list[str]:
    return [s for s in SPLITS if (Path(root) / split_table_name(s)).is_file()]


def read_annotations(root: str | os.PathLike, split: str | None = None) -> pd.DataFrame:
    """The annotation rows of a dataset, normalised.

    With `split` ('train', 'val' or 'test'): that split's table. Without: `annotations.csv` when
    the root has one, else the union of the split tables present, with a `split` column added.
    """
    root = Path(root)
    if split is not None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        path = root / split_table_name(split)
        return normalise_annotations(read_csv(path), path)
    single = root / ANNOTATIONS_FILE
    if single.is_file():
        return normalise_annotations(read_csv(single), single)
    present = split_tables_present(root)
    if not present:
        raise DataError(
            f"no annotations in {root}: expected {ANNOTATIONS_FILE} or "
            f"{', '.join(split_table_name(s) for s in SPLITS)}"
        )
    parts = [read_annotations(root, s).assign(split=s) for s in present]
    return pd.concat(parts, ignore_index=True)
