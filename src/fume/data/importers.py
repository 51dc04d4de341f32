"""Layouts people already have: MMSegmentation folders and CVAT "Segmentation mask 1.1" exports
turned into FUME's layout (`fume import-layout`), and a FUME dataset written as a CVAT export
(`fume export-for-labelling`) so that frames can be labelled in CVAT and imported again.

Imported frames become gray PNGs of their own bit depth (RGB -> gray as fume.data.frames.load_frame
does; float frames become TIFFs), masks 0/1/2 PNGs, written to ROOT/images/<gas>/<recording>/<name>.png and
ROOT/masks/<gas>/<recording>/<name>.png, with one row per frame appended to ROOT/annotations.csv.
Importing a recording (original_sample_id, gas) again replaces its rows and files.

Label names (CVAT) map to FUME's mask classes case-insensitively through LABEL_SYNONYMS; a
`--label-map NAME=fume_class,...` overrides them. MMSegmentation label maps hold class indices:
`background=0,tube=1,gas=2` (the default); a class may be named twice (`background=0,background=255`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fume.config import LabelConfig
from fume.contract import BACKGROUND, GAS, GASES, MASK_CLASS_NAMES, TUBE
from fume.data.frames import IMAGE_SUFFIXES, frame_suffix, load_frame, load_mask, open_image, write_frame
from fume.data.layout import ANNOTATION_COLUMNS, ANNOTATIONS_FILE, TEXT_COLUMNS, check_recording_id, read_csv, recording_rows
from fume.errors import DataError
from fume.io import staged_dir, write_csv, write_png, write_text

FORMATS: tuple[str, ...] = ("mmseg", "cvat-mask")
EXPORT_FORMATS: tuple[str, ...] = ("cvat-mask",)

# CVAT label names FUME understands without --label-map (compared case-insensitively, blanks and
# '_'/'-' counted as one space).
LABEL_SYNONYMS: dict[str, int] = {
    "background": BACKGROUND, "bg": BACKGROUND,
    "tube": TUBE, "outlet": TUBE, "gas outlet": TUBE,
    "gas": GAS, "plume": GAS, "gas plume": GAS,
}
# The colours export-for-labelling writes into labelmap.txt.
EXPORT_COLOURS: dict[int, tuple[int, int, int]] = {BACKGROUND: (0, 0, 0), TUBE: (250, 50, 83), GAS: (36, 179, 83)}
_CLASS_VALUE = {name: value for value, name in enumerate(MASK_CLASS_NAMES)}


@dataclass
class ImportResult:
    root: Path
    recording_id: str
    gas: str
    frames: int
    replaced: int


def _label_key(name: str) -> str:
    return " ".join(re.split(r"[\s_-]+", name.strip().lower())).strip()


def _fume_class(name: str, where: str) -> int:
    key = name.strip().lower()
    if key not in _CLASS_VALUE:
        raise DataError(f"{where}: {name!r} is not a FUME mask class; expected one of {list(MASK_CLASS_NAMES)}")
    return _CLASS_VALUE[key]


def _pairs(text: str, where: str) -> list[tuple[str, str]]:
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        left, sep, right = part.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise DataError(f"{where}: {part!r} is not of the form KEY=VALUE")
        pairs.append((left.strip(), right.strip()))
    return pairs


def parse_index_map(text: str | None) -> dict[int, int]:
    """An MMSegmentation --label-map 'background=0,tube=1,gas=2' as {index: mask value}."""
    if not text:
        return {BACKGROUND: BACKGROUND, TUBE: TUBE, GAS: GAS}
    where = "--label-map (mmseg: fume_class=index, e.g. background=0,tube=1,gas=2)"
    mapping: dict[int, int] = {}
    for left, right in _pairs(text, where):
        if left.isdigit() and not right.isdigit():
            left, right = right, left  # '0=background' is read as 'background=0'
        if not right.isdigit():
            raise DataError(f"{where}: index {right!r} of {left!r} is not a non-negative integer")
        index = int(right)
        value = _fume_class(left, where)
        if mapping.get(index, value) != value:
            raise DataError(f"{where}: index {index} is mapped to two classes")
        mapping[index] = value
    return mapping


def parse_name_map(text: str | None) -> dict[str, int]:
    """A CVAT --label-map 'NAME=fume_class,...' as {label key: mask value}."""
    where = "--label-map (cvat-mask: LABEL=fume_class, e.g. Smoke=gas)"
    return {_label_key(left): _fume_class(right, where) for left, right in _pairs(text or "", where)}


def _synonyms_text() -> str:
    by_class: dict[int, list[str]] = {}
    for name, value in LABEL_SYNONYMS.items():
        by_class.setdefault(value, []).append(repr(name))
    return "; ".join(f"{MASK_CLASS_NAMES[v]}: {', '.join(names)}" for v, names in sorted(by_class.items()))


def read_labelmap(path: Path, overrides: dict[str, int] | None = None) -> dict[tuple[int, int, int], int]:
    """CVAT's labelmap.txt as {(R, G, B): mask value}; DataError for an unknown label name."""
    if not path.is_file():
        raise DataError(f"CVAT labelmap not found: {path}; expected a 'Segmentation mask 1.1' export")
    overrides = overrides or {}
    colours: dict[tuple[int, int, int], int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.rsplit(":", 3)
        if len(fields) != 4:
            raise DataError(f"{path}, line {n}: {line!r} is not of the form name:R,G,B:parts:actions")
        name, colour = fields[0], fields[1]
        try:
            rgb = tuple(int(c) for c in colour.split(","))
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise DataError(f"{path}, line {n}: colour {colour!r} of label {name!r} is not R,G,B")
        key = _label_key(name)
        value = overrides.get(key, LABEL_SYNONYMS.get(key))
        if value is None:
            raise DataError(
                f"{path}: label {name!r} is not a FUME class; known names (any case) are {_synonyms_text()}; "
                f"map it with --label-map '{name}=gas' (or background/tube)"
            )
        if colours.get(rgb, value) != value:  # type: ignore[arg-type]
            raise DataError(f"{path}: colour {colour} is given to two labels of different classes")
        colours[rgb] = value  # type: ignore[index]
    if not colours:
        raise DataError(f"{path} names no labels")
    return colours


def _colour_mask(path: Path, colours: dict[tuple[int, int, int], int]) -> np.ndarray:
    image = open_image(path, "mask")
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    found, inverse = np.unique(packed, return_inverse=True)
    lookup = {(r << 16) | (g << 8) | b: v for (r, g, b), v in colours.items()}
    unknown = [int(c) for c in found if int(c) not in lookup]
    if unknown:
        shown = ", ".join(f"({c >> 16},{(c >> 8) & 255},{c & 255})" for c in unknown[:5])
        allowed = ", ".join(f"({r},{g},{b}) {MASK_CLASS_NAMES[v]}" for (r, g, b), v in colours.items())
        raise DataError(f"mask {path} holds colour(s) {shown} not in labelmap.txt; allowed colours: {allowed}")
    values = np.array([lookup[int(c)] for c in found], dtype=np.uint8)
    return values[inverse.reshape(packed.shape)]


def _index_mask(path: Path, index_map: dict[int, int]) -> np.ndarray:
    mask = load_mask(path)
    found = np.unique(mask)
    unknown = [int(v) for v in found if int(v) not in index_map]
    if unknown:
        named = ",".join(f"{MASK_CLASS_NAMES[v]}={i}" for i, v in sorted(index_map.items()))
        raise DataError(
            f"mask {path} holds label value(s) {unknown} not in --label-map ({named}); "
            "name each value, e.g. --label-map background=0,tube=1,gas=2"
        )
    lut = np.zeros(256, np.uint8)
    for index, value in index_map.items():
        if index < 256:
            lut[index] = value
    return lut[mask]


@dataclass
class _Item:
    name: str
    frame: Path
    mask: Path


def _images(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in found:
                raise DataError(f"two frames share the name {path.stem!r}: {found[path.stem]} and {path}")
            found[path.stem] = path
    return found


def _mmseg_items(src: Path) -> list[_Item]:
    img_dir, ann_dir = src / "img_dir", src / "ann_dir"
    if not img_dir.is_dir() or not ann_dir.is_dir():
        raise DataError(f"{src} is not an MMSegmentation dataset: expected {img_dir} and {ann_dir} with train/val/test folders")
    splits = [p.name for p in sorted(img_dir.iterdir()) if p.is_dir()]
    per_split = {s: _images(img_dir / s) for s in splits}
    stems = [stem for s in splits for stem in per_split[s]]
    clash = len(set(stems)) < len(stems)
    items = []
    for s in splits:
        for stem, frame in per_split[s].items():
            mask = ann_dir / s / f"{stem}.png"
            if not mask.is_file():
                raise DataError(f"frame {frame} has no label map: expected {mask}")
            items.append(_Item(f"{s}_{stem}" if clash else stem, frame, mask))
    if not items:
        raise DataError(f"no frames (*.png, *.jpg) found under {img_dir}/<split>/")
    return items


def _cvat_items(src: Path) -> list[_Item]:
    frames = _images(src / "JPEGImages")
    if not frames:
        raise DataError(f"no frames (*.jpg, *.png) found in {src / 'JPEGImages'}; expected a CVAT 'Segmentation mask 1.1' export")
    stems = list(frames)
    sets = src / "ImageSets" / "Segmentation"
    if sets.is_dir():
        listed: list[str] = []
        for txt in sorted(sets.glob("*.txt")):
            listed += [s.strip() for s in txt.read_text(encoding="utf-8").splitlines() if s.strip()]
        if listed:
            missing = [s for s in listed if s not in frames]
            if missing:
                raise DataError(f"{sets} lists frame(s) {missing[:5]} not found in {src / 'JPEGImages'}")
            stems = list(dict.fromkeys(listed))
    items = []
    for stem in stems:
        mask = src / "SegmentationClass" / f"{stem}.png"
        if not mask.is_file():
            raise DataError(f"frame {frames[stem]} has no mask: expected {mask}")
        items.append(_Item(stem, frames[stem], mask))
    return items


def import_layout(
    src: str | os.PathLike,
    fmt: str,
    root: str | os.PathLike,
    gas: str,
    ph: float,
    recording_id: str | None = None,
    label_map: str | None = None,
    label_config: LabelConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Convert an MMSegmentation folder or a CVAT mask export at `src` into FUME's layout at `root`.
    Every file is converted (and so checked) before anything under `root` changes."""
    src, root = Path(src), Path(root)
    if fmt not in FORMATS:
        raise DataError(f"unknown --format {fmt!r}; expected one of {list(FORMATS)}")
    gas = gas.strip().lower()
    if gas not in GASES:
        raise DataError(f"unknown --gas {gas!r}; expected one of {list(GASES)}")
    if not src.is_dir():
        raise DataError(f"source folder not found: {src}")
    labels = label_config or LabelConfig()
    class_id = labels.class_of_ph(ph)
    rid = check_recording_id(recording_id if recording_id else src.resolve().name)
    if fmt == "mmseg":
        items = _mmseg_items(src)
        index_map = parse_index_map(label_map)
        read_mask: Callable[[Path], np.ndarray] = lambda p: _index_mask(p, index_map)
    else:
        items = _cvat_items(src)
        colours = read_labelmap(src / "labelmap.txt", parse_name_map(label_map))
        read_mask = lambda p: _colour_mask(p, colours)

    def convert(item: _Item) -> tuple[np.ndarray, np.ndarray]:
        frame, mask = load_frame(item.frame), read_mask(item.mask)
        if frame.shape != mask.shape:
            raise DataError(
                f"frame {item.frame} is {frame.shape[1]}x{frame.shape[0]} but its mask {item.mask} is {mask.shape[1]}x{mask.shape[0]}"
            )
        return frame, mask

    table_path = root / ANNOTATIONS_FILE
    old = read_csv(table_path) if table_path.is_file() else pd.DataFrame(columns=ANNOTATION_COLUMNS)
    mine = recording_rows(old, rid, gas)
    new_paths: set[str] = set()
    rows = []
    # Converted into a staging folder: a bad file stops the import before anything under root changes.
    with staged_dir(root) as staging:
        for item in items:
            frame, mask = convert(item)
            frame_rel = f"images/{gas}/{rid}/{item.name}{frame_suffix(frame)}"
            mask_rel = f"masks/{gas}/{rid}/{item.name}.png"
            write_frame(staging / frame_rel, frame)
            write_png(staging / mask_rel, mask)
            new_paths.update((frame_rel, mask_rel))
            rows.append({
                "frame_path": frame_rel, "mask_path": mask_rel, "gas_type": gas, "ph_value": float(ph),
                "class_name": labels.class_names[class_id], "class_id": class_id,
                "original_sample_id": rid, "augmentation_id": 0,
            })
            if progress:
                progress(1)
        for _, row in old[mine].iterrows():  # the replaced rows' files that the new import does not rewrite
            for column in ("frame_path", "mask_path"):
                rel = str(row[column]).strip().replace("\\", "/")
                target = (root / rel).resolve()
                if rel and rel not in new_paths and target.is_file() and root.resolve() in target.parents:
                    target.unlink()
        table = pd.concat([old[~mine], pd.DataFrame(rows)], ignore_index=True)
        for column in table.columns:
            if column in TEXT_COLUMNS or table[column].dtype == object:
                table[column] = table[column].fillna("")
        write_csv(staging / ANNOTATIONS_FILE, table)
    return ImportResult(root=root, recording_id=rid, gas=gas, frames=len(items), replaced=int(mine.sum()))


def export_for_labelling(
    root: str | os.PathLike, fmt: str, out: str | os.PathLike, gas: str | None = None,
    progress: Callable[[int], None] | None = None, recording: str | None = None,
) -> int:
    """Write the frames of `root` (one gas and/or one recording, or all) and their masks as a CVAT 'Segmentation mask 1.1'
    export in `out`: labelmap.txt, JPEGImages/<name>.png (gray), SegmentationClass/<name>.png (RGB
    colours of EXPORT_COLOURS; all background where a row has no mask) and
    ImageSets/Segmentation/default.txt. Returns the number of frames written."""
    from fume.data.layout import read_annotations, resolve_table_path

    root, out = Path(root), Path(out)
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"unknown --format {fmt!r}; expected one of {list(EXPORT_FORMATS)}")
    table = read_annotations(root)
    if gas is not None:
        gas = gas.strip().lower()
        if gas not in GASES:
            raise DataError(f"unknown --gas {gas!r}; expected one of {list(GASES)}")
        table = table[table["gas_type"] == gas]
    if recording is not None:  # one recording per CVAT task: it comes back with import-layout --recording-id
        table = table[table["original_sample_id"].astype(str) == str(recording)]
    if table.empty:
        which = " and".join(w for w in (f" of gas {gas}" if gas else "", f" of recording {recording}" if recording else "") if w)
        raise DataError(f"{root} has no frames{which} to export")
    names = [Path(p).stem for p in table["frame_path"]]
    if len(set(names)) < len(names):
        names = [str(Path(p).with_suffix("")).replace("\\", "/").replace("/", "__") for p in table["frame_path"]]
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{MASK_CLASS_NAMES[v]}:{r},{g},{b}::" for v, (r, g, b) in EXPORT_COLOURS.items()]
    palette = np.zeros((256, 3), np.uint8)
    for value, rgb in EXPORT_COLOURS.items():
        palette[value] = rgb
    for name, (_, row) in zip(names, table.iterrows(), strict=True):
        frame_file = resolve_table_path(row["frame_path"], root, root, where=f"{root / ANNOTATIONS_FILE}")
        frame = load_frame(frame_file)
        mask_file = resolve_table_path(row["mask_path"], root, root, where=f"{root / ANNOTATIONS_FILE}")
        mask = load_mask(mask_file) if mask_file is not None else np.zeros_like(frame)
        if mask.shape != frame.shape:
            raise DataError(f"frame {frame_file} is {frame.shape[1]}x{frame.shape[0]} but its mask {mask_file} is {mask.shape[1]}x{mask.shape[0]}")
        if int(mask.max(initial=0)) > GAS:
            raise DataError(f"mask {mask_file} holds values above {GAS}; expected only 0/1/2")
        write_frame(out / "JPEGImages" / f"{name}.png", frame)  # as stored: 16-bit stays 16-bit
        write_png(out / "SegmentationClass" / f"{name}.png", palette[mask][..., ::-1].copy())  # write_png takes BGR
        if progress:
            progress(1)
    write_text(out / "labelmap.txt", "\n".join(lines) + "\n")
    write_text(out / "ImageSets" / "Segmentation" / "default.txt", "\n".join(names) + "\n")
    return len(names)


__all__ = [
    "EXPORT_COLOURS", "FORMATS", "LABEL_SYNONYMS", "ImportResult", "export_for_labelling", "import_layout",
    "parse_index_map", "parse_name_map", "read_labelmap",
]
