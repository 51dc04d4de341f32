"""The real dataset layout: annotation CSVs (ANNOTATION_COLUMNS below) with paths relative to the
root, possibly written on Windows, and the paired tables (PAIRED_COLUMNS) that pairing writes and
training reads."""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

import pandas as pd

from fume.errors import ConfigError, DataError

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

# The recording (original_sample_id) of each gas's frame: written by pairing, read when present (an
# older paired table lacks them; each frame is then its own recording). Per-recording statistics
# (the intensity window's percentiles, recording-level intervals) group frames by them.
PAIRED_RECORDING_COLUMNS: list[str] = ["co2_recording", "ch4_recording"]

# Optional "who and when" columns of the annotation tables: kept through split, pairing, evaluation
# and prediction when present, never added when absent. In a paired table `animal_id` stays one
# column (pairing stays within an animal); the others become one column per gas.
WHO_WHEN_COLUMNS: list[str] = ["animal_id", "session_id", "timestamp"]
PAIRED_WHO_WHEN_COLUMNS: list[str] = ["animal_id", "co2_session_id", "ch4_session_id", "co2_timestamp", "ch4_timestamp"]
# Columns read as text, so that ids like '007' keep their leading zeros.
TEXT_COLUMNS: list[str] = ["original_sample_id", "sample_id", *PAIRED_RECORDING_COLUMNS, *WHO_WHEN_COLUMNS, *PAIRED_WHO_WHEN_COLUMNS[1:]]

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


def clean_path(path: str) -> str:
    """A CSV path with '/' separators, no surrounding blanks and no leading './' (a leading
    'mmseg_dataset/' is kept: resolve_table_path tries the path with and without it)."""
    path = str(path).strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


# Where `fume pair --out DIR` records the dataset root its tables' paths are relative to.
PAIRED_SIDECAR = "paired_tables.json"
_DRIVE = re.compile(r"^[A-Za-z]:(/|$)")
_ALLOW_OUTSIDE_ROOT: ContextVar[bool] = ContextVar("fume_allow_outside_root", default=False)
OUTSIDE_ROOT_HINT = "pass --allow-outside-root (config: data.allow_outside_root: true) to permit it"


@contextmanager
def outside_root_allowed(allow: bool = True) -> Iterator[None]:
    """Within the block, resolve_table_path's default for `allow_outside_root` is `allow`."""
    token = _ALLOW_OUTSIDE_ROOT.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_OUTSIDE_ROOT.reset(token)


def write_root_record(out: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Record in `out`/paired_tables.json the dataset root the paired tables there are relative to."""
    from fume.io import write_json

    return write_json(Path(out) / PAIRED_SIDECAR, {"dataset_root": str(Path(root).resolve())})


@lru_cache(maxsize=64)
def _recorded(sidecar: str, mtime_ns: int) -> Path | None:
    try:
        value = json.loads(Path(sidecar).read_text(encoding="utf-8")).get("dataset_root")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(value) if isinstance(value, str) and value else None


def recorded_root(csv_dir: str | os.PathLike | None) -> Path | None:
    """The dataset root `fume pair` recorded next to its tables in `csv_dir`, or None."""
    if csv_dir is None:
        return None
    sidecar = Path(csv_dir) / PAIRED_SIDECAR
    try:
        mtime = sidecar.stat().st_mtime_ns
    except OSError:
        return None
    return _recorded(str(sidecar), mtime)


def check_table_path(value: str, allow_outside_root: bool | None = None, where: str = "table") -> str:
    """`value` cleaned (clean_path); DataError naming `where` and the path when it is absolute or
    leaves the folder it is relative to ('..'), unless `allow_outside_root`."""
    allow = _ALLOW_OUTSIDE_ROOT.get() if allow_outside_root is None else allow_outside_root
    path = clean_path(value)
    if allow or not path:
        return path
    if path.startswith("/") or _DRIVE.match(path):
        raise DataError(f"{where}: path {value!r} is absolute; paths must be relative to the dataset root ({OUTSIDE_ROOT_HINT})")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        raise DataError(f"{where}: path {value!r} leaves the dataset root ({OUTSIDE_ROOT_HINT})")
    return path


def resolve_table_path(
    value: str,
    csv_dir: str | os.PathLike | None,
    root: str | os.PathLike | None,
    allow_outside_root: bool | None = None,
    where: str = "table row",
    must_exist: bool = True,
) -> Path | None:
    """The file a table cell names (None for an empty cell). The one rule every reader follows:

    - backslashes are separators; an absolute path, or one that leaves its folder ('..'), is
      refused unless `allow_outside_root` (default: outside_root_allowed's setting, off);
    - a relative path is looked up under `root` and under `csv_dir` (the CSV's folder), with and
      without a leading 'mmseg_dataset/'; when none exists, under the root `fume pair` recorded in
      csv_dir/paired_tables.json;
    - two candidates that exist and are different files: DataError naming both; none: DataError
      naming every path tried (with `must_exist=False`, the first candidate is returned instead).
    """
    path = check_table_path(value, allow_outside_root, where)
    if not path:
        return None
    if path.startswith("/") or _DRIVE.match(path):
        return Path(path)
    variants = list(dict.fromkeys([normalise_path(path), path]))
    bases = list(dict.fromkeys(Path(b) for b in (root, csv_dir) if b is not None)) or [Path(".")]
    tried = list(dict.fromkeys(base / v for base in bases for v in variants))
    found: list[Path] = []
    for candidate in tried:
        if candidate.is_file() and not any(os.path.samefile(candidate, f) for f in found):
            found.append(candidate)
    if not found:
        recorded = recorded_root(csv_dir)
        if recorded is not None and recorded not in bases:
            extra = [recorded / v for v in variants]
            tried += extra
            found = [c for c in extra if c.is_file()][:1]
    if len(found) > 1:
        raise DataError(
            f"{where}: path {value!r} names two different files: {found[0]} and {found[1]}; "
            "make the path unambiguous (relative to the dataset root)"
        )
    if found:
        return found[0]
    if must_exist:
        also = f" (also tried {', '.join(str(t) for t in tried[1:])})" if len(tried) > 1 else ""
        raise DataError(f"{where} file not found: {tried[0]}{also}")
    return tried[0]


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV with ids kept as text (so '007' stays '007'); DataError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation table not found: {path}")
    try:
        return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False)
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


_RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_recording_id(value: str) -> str:
    """A recording id that can name a folder (it does, under the dataset root); ConfigError otherwise."""
    value = str(value).strip()
    if not _RECORDING_ID.match(value):
        raise ConfigError(
            f"recording id {value!r} cannot name a folder (letters, digits, '.', '_', '-', starting with a letter or digit); "
            "give one with --recording-id"
        )
    return value


def recording_rows(table: pd.DataFrame, recording_id: str, gas: str) -> pd.Series:
    """Which rows of an annotation table belong to one gas of one recording (what an import replaces)."""
    if table.empty:
        return pd.Series(False, index=table.index)
    return (table["original_sample_id"].astype(str).str.strip() == recording_id) & (
        table["gas_type"].astype(str).str.strip().str.lower() == gas
    )


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
