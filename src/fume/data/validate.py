"""`fume validate-data`: check every row and file of a dataset and report each kind of defect with
counts and the first examples, instead of failing on the first one."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fume.config import LabelConfig
from fume.contract import GASES, MASK_VALUES
from fume.data.frames import MAX_IMAGE_PIXELS, ImageTooLargeError, frame_bit_depth, load_frame, load_mask
from fume.data.layout import (
    ANNOTATION_COLUMNS,
    ANNOTATIONS_FILE,
    PAIRED_COLUMNS,
    SPLITS,
    clean_path,
    missing_columns,
    normalise_path,
    paired_table_name,
    read_csv,
    resolve_table_path,
    split_table_name,
)
from fume.data.window import recording_key
from fume.errors import DataError

# Defect kinds, in the order they are reported.
DEFECTS: dict[str, str] = {
    "unreadable_table": "annotation table that cannot be parsed",
    "missing_columns": "table without a required column",
    "empty_table": "table with a header and no rows",
    "bad_value": "cell that should be a number and is not",
    "duplicate_row": "frame listed twice in one table",
    "unknown_gas": "gas_type other than co2 / ch4",
    "unknown_class": "class_name or class_id not in the class list",
    "class_ph_mismatch": "class that contradicts the pH mapping",
    "outside_root": "absolute path or '..' leaving the dataset root (allowed by --allow-outside-root)",
    "ambiguous_path": "path naming different files relative to the CSV's folder and the dataset root",
    "missing_file": "frame or mask file not found",
    "unreadable_image": "image that cannot be decoded: corrupt or truncated",
    "image_too_large": "image over the pixel limit (data.max_image_pixels), not decoded",
    "mask_values": "mask with values outside {0, 1, 2}",
    "size_mismatch": "frame and mask of different sizes",
    "mixed_bit_depth": "recording whose frames mix bit depths (8-bit, 16-bit, float): one intensity window cannot fit them all",
}
EXAMPLES = 5


@dataclass
class ValidationReport:
    root: str
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows
    files_checked: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # "class"/"gas"/"ph" -> counts
    defects: dict[str, list[str]] = field(default_factory=dict)
    unlabelled: int = 0  # frames without a mask (e.g. `fume import-recording`): not a defect, skipped by training
    bit_depths: dict[str, int] = field(default_factory=dict)  # frames checked by bit depth ("8-bit", "16-bit", "float")

    @property
    def ok(self) -> bool:
        return not any(self.defects.values())

    def add(self, kind: str, message: str) -> None:
        self.defects.setdefault(kind, []).append(message)

    def render(self) -> str:
        lines = [f"dataset {self.root}"]
        lines += [f"  {name}: {rows} rows" for name, rows in self.tables.items()]
        lines.append(f"  image files checked: {self.files_checked}")
        for what, counts in self.counts.items():
            lines.append(f"  by {what}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if self.bit_depths:
            lines.append("  frames by bit depth: " + ", ".join(f"{k} {v}" for k, v in sorted(self.bit_depths.items())))
        if self.unlabelled:
            lines.append(f"  {self.unlabelled} unlabelled frames (no mask) skipped")
        if self.ok:
            lines.append("OK: no defects found")
            return "\n".join(lines)
        total = sum(len(v) for v in self.defects.values())
        lines.append(f"FAILED: {total} defect(s)")
        for kind, description in DEFECTS.items():
            found = self.defects.get(kind, [])
            if not found:
                continue
            lines.append(f"  {kind} ({description}): {len(found)}")
            lines += [f"    - {m}" for m in found[:EXAMPLES]]
            if len(found) > EXAMPLES:
                lines.append(f"    ... and {len(found) - EXAMPLES} more")
        return "\n".join(lines)


def _check_annotation_rows(table: pd.DataFrame, name: str, labels: LabelConfig, report: ValidationReport) -> pd.DataFrame:
    """Row-level checks; returns the rows whose files should be checked (with normalised paths)."""
    def where(i: int) -> str:
        return f"{name} row {i + 2}"  # +2: header line and 1-based lines, as in a spreadsheet

    for column in ("ph_value", "class_id", "augmentation_id"):
        numbers = pd.to_numeric(table[column], errors="coerce")
        for i in np.flatnonzero(numbers.isna().to_numpy()):
            report.add("bad_value", f"{where(i)}: {column} = {table[column].iloc[i]!r} is not a number")
    frames = table["frame_path"].astype(str).map(normalise_path)
    for i in np.flatnonzero(frames.duplicated().to_numpy()):
        report.add("duplicate_row", f"{where(i)}: frame {frames.iloc[i]} is listed again")
    for i, row in enumerate(table.itertuples(index=False)):
        gas = str(row.gas_type).strip().lower()
        if gas not in labels.gases:
            report.add("unknown_gas", f"{where(i)}: gas_type {row.gas_type!r}; expected one of {list(labels.gases)}")
        name_ok = str(row.class_name).strip() in labels.class_names
        if not name_ok:
            report.add("unknown_class", f"{where(i)}: class_name {row.class_name!r}; expected one of {labels.class_names}")
        try:
            class_id = int(float(row.class_id))
            ph = float(row.ph_value)
        except (TypeError, ValueError):
            continue  # reported as bad_value
        if not 0 <= class_id < labels.num_classes:
            report.add("unknown_class", f"{where(i)}: class_id {class_id} outside 0..{labels.num_classes - 1}")
            continue
        if name_ok and labels.class_id(str(row.class_name).strip()) != class_id:
            report.add("class_ph_mismatch", f"{where(i)}: class_name {row.class_name!r} but class_id {class_id}")
        try:
            expected = labels.class_of_ph(ph)
        except DataError:
            report.add("class_ph_mismatch", f"{where(i)}: pH {ph} is not a configured level {labels.ph_levels}")
            continue
        if expected != class_id:
            report.add(
                "class_ph_mismatch",
                f"{where(i)}: pH {ph} maps to {labels.class_names[expected]} but the row says "
                f"{labels.class_names[class_id]} (class_id {class_id})",
            )
    raw = {k: table[f"{k}_path"].astype(str).map(clean_path) for k in ("frame", "mask")}
    recordings = [recording_key(str(g).strip().lower(), str(r)) for g, r in zip(table["gas_type"], table["original_sample_id"])]
    return pd.DataFrame({"frame": raw["frame"], "mask": raw["mask"], "where": [where(i) for i in range(len(table))], "recording": recordings})


def _check_files(
    pairs: pd.DataFrame, root: Path, report: ValidationReport, progress: Callable[[int, int], None] | None,
    max_pixels: int = MAX_IMAGE_PIXELS, allow_outside_root: bool | None = None,
) -> None:
    """Each (frame, mask) once: path rules (resolve_table_path), existence, decoding, mask values, sizes."""
    def load(rel: str, kind: str, where: str):
        try:
            path = resolve_table_path(rel, root, root, allow_outside_root, f"{where}: {kind}", must_exist=False)
        except DataError as err:
            report.add("ambiguous_path" if "two different files" in str(err) else "outside_root", str(err))
            return None
        rel = normalise_path(rel)
        if path is None or not path.is_file():
            report.add("missing_file", f"{where}: {kind} {rel} not found")
            return None
        try:
            report.files_checked += 1
            return load_mask(path, max_pixels) if kind == "mask" else load_frame(path, max_pixels)
        except ImageTooLargeError as err:
            report.add("image_too_large", f"{where}: {err}")
            return None
        except DataError as err:
            report.add("unreadable_image", f"{where}: {err}")
            return None

    unique = pairs.drop_duplicates(["frame", "mask"])
    depths: dict[str, dict[str, str]] = {}  # recording -> {bit depth: first frame of that depth}
    for done, row in enumerate(unique.itertuples(index=False), start=1):
        frame = load(row.frame, "frame", row.where)
        if frame is not None:
            depth = frame_bit_depth(frame)
            report.bit_depths[depth] = report.bit_depths.get(depth, 0) + 1
            if row.recording:
                depths.setdefault(row.recording, {}).setdefault(depth, row.frame)
        mask = load(row.mask, "mask", row.where) if row.mask else None  # no mask: an unlabelled frame
        if mask is not None:
            values = set(np.unique(mask).tolist())
            if not values <= MASK_VALUES:
                report.add("mask_values", f"{row.where}: mask {row.mask} holds {sorted(values - MASK_VALUES)}; expected only 0, 1, 2")
        if frame is not None and mask is not None and frame.shape != mask.shape:
            report.add(
                "size_mismatch",
                f"{row.where}: frame {row.frame} is {frame.shape[1]}x{frame.shape[0]}, mask is {mask.shape[1]}x{mask.shape[0]}",
            )
        if progress is not None:
            progress(done, len(unique))
    for recording, found in depths.items():
        if len(found) > 1:
            examples = ", ".join(f"{depth} ({frame})" for depth, frame in sorted(found.items()))
            report.add("mixed_bit_depth", f"recording {recording} mixes {examples}")


def validate_dataset(
    root: str | os.PathLike,
    label_config: LabelConfig | None = None,
    check_files: bool = True,
    progress: Callable[[int, int], None] | None = None,
    max_image_pixels: int | None = None,
    allow_outside_root: bool | None = None,
) -> ValidationReport:
    """Check `annotations.csv`, the split tables and the paired tables present in `root`, and every
    frame and mask they name. Never raises for a data defect: each one goes into the report.
    `progress(done, total)` is called after each (frame, mask) file pair. Images over
    `max_image_pixels` (default fume.data.frames.MAX_IMAGE_PIXELS) are reported, not decoded. Paths
    follow fume.data.layout.resolve_table_path: absolute ones and '..' are reported (kind
    outside_root) unless `allow_outside_root`."""
    labels = label_config or LabelConfig()
    root = Path(root)
    report = ValidationReport(root=str(root))
    if not root.is_dir():
        report.add("missing_file", f"dataset folder {root} not found")
        return report
    names = [ANNOTATIONS_FILE] + [split_table_name(s) for s in SPLITS]
    paired_names = [paired_table_name(s) for s in SPLITS]
    present = [n for n in names if (root / n).is_file()]
    present_paired = [n for n in paired_names if (root / n).is_file()]
    if not present:
        report.add("missing_file", f"no annotation table in {root}; expected one of {names}")
        return report

    to_check = []
    all_rows = []
    for name in present + present_paired:
        try:
            table = read_csv(root / name)
        except DataError as err:
            report.add("unreadable_table", str(err))
            continue
        report.tables[name] = len(table)
        required = PAIRED_COLUMNS if name in present_paired else ANNOTATION_COLUMNS
        absent = missing_columns(table, required)
        if absent:
            report.add("missing_columns", f"{name}: missing {absent}; expected columns {required}")
            continue
        if table.empty:  # training needs train and val rows, evaluation test rows: never a valid table
            report.add("empty_table", f"{name}: no rows, only a header")
            continue
        if name in present_paired:
            to_check.append(_paired_rows(table, name, labels, report))
        else:
            to_check.append(_check_annotation_rows(table, name, labels, report))
            all_rows.append(table)
    if all_rows:  # counts of annotations.csv, else of the split tables together
        _count(all_rows[0] if ANNOTATIONS_FILE in report.tables else pd.concat(all_rows), report)
    if check_files and to_check:
        limit = MAX_IMAGE_PIXELS if max_image_pixels is None else int(max_image_pixels)
        _check_files(pd.concat(to_check, ignore_index=True), root, report, progress, limit, allow_outside_root)
    return report


def _paired_rows(table: pd.DataFrame, name: str, labels: LabelConfig, report: ValidationReport) -> pd.DataFrame:
    rows = []
    for i, row in enumerate(table.to_dict("records")):
        where = f"{name} row {i + 2}"
        for gas in GASES:
            frame = clean_path(row[f"{gas}_frame"] or "")
            mask = clean_path(row[f"{gas}_mask"] or "")
            recording = str(row.get(f"{gas}_recording") or "")
            if frame or mask:
                rows.append({"frame": frame, "mask": mask, "where": where, "recording": recording_key(gas, recording) if recording else ""})
        try:
            if labels.class_of_ph(float(row["ph_value"])) != int(row["class_id"]):
                report.add("class_ph_mismatch", f"{where}: pH {row['ph_value']} does not map to class_id {row['class_id']}")
        except (DataError, ValueError, TypeError):
            report.add("class_ph_mismatch", f"{where}: pH {row['ph_value']!r} / class_id {row['class_id']!r} not in the mapping")
    return pd.DataFrame(rows, columns=["frame", "mask", "where", "recording"])


def _count(table: pd.DataFrame, report: ValidationReport) -> None:
    report.unlabelled = int((table["mask_path"].astype(str).str.strip() == "").sum())
    report.counts["class"] = {str(k): int(v) for k, v in table["class_name"].value_counts().sort_index().items()}
    report.counts["gas"] = {str(k): int(v) for k, v in table["gas_type"].astype(str).str.strip().str.lower().value_counts().sort_index().items()}

