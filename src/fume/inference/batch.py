"""Batch prediction over a folder of frame pairs or a paired CSV, and the output layout.

OUT/
  predictions.csv          one row per pair: class, pH range, probabilities, plume areas, tube found
  json/<sample_id>.json    the per-pair JSON (Predictor's PairPrediction.to_dict)
  overlays/<sample_id>_<gas>.png   frame with gas and tube coloured, class in the corner
  masks/<sample_id>_<gas>.png      labels 0/1/2 at native size (with save_masks)

Everything is written into a hidden staging folder inside OUT and moved into place only when
the whole run has succeeded: a failed run leaves no partial outputs under their final names.

File names that are not valid UTF-8 (bytes Python holds as lone surrogates, e.g. b"pair_\\xff_co2.png")
are predicted like any other, not refused. predictions.csv (UTF-8) gives such a name with each
undecodable byte as a backslash escape, `pair_\\xff_co2.png` (csv_text), as `ls -b` would; the
per-pair JSON keeps the exact name as a "\\udcff" escape, which os.fsencode(json.load(...)[...])
turns back into the file's bytes. Overlay and mask names come from the file-safe sample id.

OUT holds one run's results. When it already holds the outputs of an earlier prediction run
(PREDICT_OUTPUTS: the files above and video mode's video_predictions.csv / annotated.mp4),
`fume predict` refuses unless --overwrite; with it (and by default in predict_pairs /
predict_video) the new run is staged first, then the earlier run's outputs are removed and the
new ones moved in, so no stale json/overlays/masks of the earlier run stay beside the new
predictions.csv. Only files FUME writes there are removed: anything else in OUT is left alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fume.contract import GASES, key_name
from fume.data.frames import IMAGE_SUFFIXES
from fume.data.layout import PAIRED_WHO_WHEN_COLUMNS
from fume.errors import ConfigError, DataError
from fume.inference.engine import PairInput, load_batches, pairs_from_table, predict_loaded
from fume.inference.overlay import overlay
from fume.inference.predictor import PairPrediction, Predictor, default_sample_id
from fume.io import staged_dir, write_csv, write_json, write_png

# What a prediction run (batch or video mode) writes into OUT, as glob patterns relative to OUT.
PREDICT_OUTPUTS = ("predictions.csv", "json/*.json", "overlays/*.png", "masks/*.png", "video_predictions.csv", "annotated.mp4")
_GAS_TOKEN = re.compile(r"(?i)(?:^|(?<=[_\-. ]))(co2|ch4)(?=[_\-. ]|$)")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "pair"


def unique_ids(pairs: list[PairInput]) -> list[PairInput]:
    """File-safe, distinct sample ids (a clash gets _2, _3, ...)."""
    seen: dict[str, int] = {}
    for pair in pairs:
        base = safe_name(pair.sample_id)
        n = seen.get(base, 0) + 1
        seen[base] = n
        pair.sample_id = base if n == 1 else f"{base}_{n}"
    return pairs


def gas_of(path: Path, folder: Path) -> str | None:
    """The gas a file belongs to: a folder named co2/ch4 on its path, else a co2/ch4 word in its name."""
    for part in path.relative_to(folder).parts[:-1]:
        if part.lower() in GASES:
            return part.lower()
    found = {m.group(1).lower() for m in _GAS_TOKEN.finditer(path.stem)}
    return found.pop() if len(found) == 1 else None


def pairs_from_folder(folder: str | os.PathLike) -> list[PairInput]:
    """Pairs of a folder (searched recursively): either co2/ and ch4/ sub-folders holding files of
    the same names, or files named like `name_co2.png` / `name_ch4.png`. A frame without a partner
    is predicted alone (that gas marked absent)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
    groups: dict[tuple[str, str], dict[str, Path]] = {}
    for path in files:
        gas = gas_of(path, folder)
        if gas is None:
            raise DataError(
                f"cannot tell whether {path} is a CO2 or a CH4 frame: put frames in co2/ and ch4/ sub-folders "
                "or name them like NAME_co2.png and NAME_ch4.png"
            )
        parent = "/".join(p for p in path.relative_to(folder).parts[:-1] if p.lower() not in GASES)
        key = (parent, default_sample_id(str(path), None))
        slot = groups.setdefault(key, {})
        if gas in slot:
            raise DataError(f"two {gas.upper()} frames for pair {key[1]!r} in {folder}: {slot[gas]} and {path}")
        slot[gas] = path
    # The frames of one gas in one folder are one recording (for the intensity window, fume.data.window).
    pairs = [
        PairInput("/".join(p for p in key if p), slot.get("co2"), slot.get("ch4"), recordings={g: str(p.parent) for g, p in slot.items()})
        for key, slot in sorted(groups.items())
    ]
    return unique_ids(pairs)


def pairs_from_csv(
    table: str | os.PathLike, root: str | os.PathLike | None = None, allow_outside_root: bool | None = None
) -> list[PairInput]:
    """Pairs of a paired table (paired_*_annotations.csv); paths resolved against `root` (default:
    the root `fume pair` recorded, else the CSV's folder) and the CSV's folder (resolve_table_path)."""
    from fume.data.dataset import read_paired_table
    from fume.data.layout import recorded_root

    table = Path(table)
    if not table.is_file():
        raise DataError(f"paired table not found: {table}")
    root = Path(root) if root is not None else (recorded_root(table.parent) or table.parent)
    return unique_ids(pairs_from_table(read_paired_table(table), root, source=str(table), allow_outside_root=allow_outside_root))


def collect_pairs(
    source: str | os.PathLike, root: str | os.PathLike | None = None, allow_outside_root: bool | None = None
) -> list[PairInput]:
    source = Path(source)
    if source.is_dir():
        return pairs_from_folder(source)
    if source.suffix.lower() == ".csv":
        return pairs_from_csv(source, root, allow_outside_root)
    if not source.exists():
        raise DataError(f"input not found: {source}")
    raise DataError(f"input {source} is neither a folder of frame pairs nor a paired CSV (.csv)")


def describe_class(pred: PairPrediction) -> str:
    if pred.probabilities is None:
        return "segmentation only"
    rng = pred.to_dict()["ph_range"]
    ph = f"pH {rng['min']:.1f}-{rng['max']:.1f}" if rng["min"] != rng["max"] else f"pH {rng['min']:.1f}"
    return f"{pred.class_name} {100 * float(pred.probabilities.max()):.0f}% ({ph})"


def pair_overlay(pred: PairPrediction, gas: str, data: dict[str, Any] | None = None) -> np.ndarray:
    """The overlay of one present gas of a pair (BGR): class and plume written in the corner.
    `data`: pred.to_dict(), when the caller has it already."""
    summary = (data or pred.to_dict())["gases"][gas]
    lines = [f"{gas.upper()}: {describe_class(pred)}"]
    if "plume_area_percent" in summary:
        lines.append(f"plume {summary['plume_area_percent']:.1f}%  tube {'yes' if summary['tube_found'] else 'no'}")
    return overlay(pred.gases[gas].display, pred.gases[gas].mask, lines)


def write_pair_outputs(pred: PairPrediction, staging: Path, overlays: bool, save_masks: bool) -> dict[str, str]:
    """The JSON, overlays and masks of one pair; returns their paths relative to OUT."""
    written = {"json": f"json/{pred.sample_id}.json"}
    data = pred.to_dict()
    write_json(staging / written["json"], data)
    for gas in GASES:
        result = pred.gases[gas]
        if not result.present:
            continue
        if overlays:
            written[f"{gas}_overlay"] = f"overlays/{pred.sample_id}_{gas}.png"
            write_png(staging / written[f"{gas}_overlay"], pair_overlay(pred, gas, data))
        if save_masks and result.mask is not None:
            written[f"{gas}_mask"] = f"masks/{pred.sample_id}_{gas}.png"
            write_png(staging / written[f"{gas}_mask"], result.mask)
    return written


def csv_text(name: str) -> str:
    """A file name as UTF-8-writable text: an undecodable byte (a lone surrogate from os.fsdecode)
    becomes a backslash escape such as \\xff; valid names are unchanged."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def csv_row(pair: PairInput | None, pred: PairPrediction, files: dict[str, str]) -> dict[str, Any]:

    data = pred.to_dict()
    row: dict[str, Any] = {"sample_id": pred.sample_id}
    for gas in GASES:
        row[f"{gas}_frame"] = csv_text(pred.gases[gas].source or "")
    if pair is not None and pair.class_id is not None:
        row["class_id"] = pair.class_id
    if pair is not None:  # who and when, only when the input table has them
        row.update({column: pair.row[column] for column in PAIRED_WHO_WHEN_COLUMNS if column in pair.row})
    row["pred_class_id"] = data["class_id"]
    row["pred_class_name"] = data["class_name"]
    rng = data["ph_range"] or {}
    row["ph_min"], row["ph_max"] = rng.get("min"), rng.get("max")
    for name in pred.label_config.class_names:
        row[f"prob_{key_name(name)}"] = None if data["probabilities"] is None else data["probabilities"][name]
    for gas in GASES:
        summary = data["gases"][gas]
        row[f"{gas}_plume_area_px"] = summary.get("plume_area_px")
        row[f"{gas}_plume_area_percent"] = summary.get("plume_area_percent")
        row[f"{gas}_tube_found"] = summary.get("tube_found")
    row.update(files)
    return row


def earlier_outputs(out: str | os.PathLike, patterns: Sequence[str]) -> list[Path]:
    """The files matching `patterns` in OUT (an earlier run's outputs), staging folders aside."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted({p for pattern in patterns for p in out.glob(pattern) if p.is_file() and not p.name.startswith(".")})


def check_output_folder(out: str | os.PathLike, patterns: Sequence[str], overwrite: bool) -> None:
    """ConfigError when OUT already holds outputs of an earlier run and `overwrite` is False."""
    found = earlier_outputs(out, patterns)
    if found and not overwrite:
        names = sorted({p.relative_to(out).parts[0] + ("/" if len(p.relative_to(out).parts) > 1 else "") for p in found})
        raise ConfigError(
            f"{out} already holds the outputs of an earlier run ({', '.join(names)}); "
            "pass --overwrite to replace them, or choose another --out"
        )


def remove_earlier_outputs(out: str | os.PathLike, patterns: Sequence[str]) -> None:
    """Delete the earlier run's outputs (only files matching `patterns`) and the folders they
    leave empty; called once the new run is staged, just before it moves in."""
    out = Path(out)
    found = earlier_outputs(out, patterns)
    for path in found:
        path.unlink(missing_ok=True)
    for folder in sorted({p.parent for p in found} - {out}, key=lambda d: len(d.parts), reverse=True):
        try:
            folder.rmdir()  # only when empty: a file of the user's keeps its folder
        except OSError:
            pass


@dataclass
class BatchResult:
    out_dir: Path
    predictions_csv: Path
    predictions: list[dict[str, Any]]


def predict_pairs(
    predictor: Predictor,
    pairs: Sequence[PairInput],
    out: str | os.PathLike,
    overlays: bool = True,
    save_masks: bool = False,
    batch_size: int = 1,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = True,
) -> BatchResult:
    """Predict every pair and write OUT's files (see the module docstring). `progress(k)` after each
    batch. An earlier run's outputs in OUT are replaced, or with overwrite=False refused (ConfigError)."""
    import pandas as pd

    out = Path(out)
    check_output_folder(out, PREDICT_OUTPUTS, overwrite)
    rows = []
    with staged_dir(out) as staging:
        for batch in load_batches(pairs, batch_size, window=predictor.frame_window):
            for loaded, pred in zip(batch, predict_loaded(predictor, batch)):
                rows.append(csv_row(loaded.pair, pred, write_pair_outputs(pred, staging, overlays, save_masks)))
            if progress is not None:
                progress(len(batch))
        write_csv(staging / "predictions.csv", pd.DataFrame(rows))
        remove_earlier_outputs(out, PREDICT_OUTPUTS)
    return BatchResult(out, out / "predictions.csv", rows)

