"""fume import-layout (MMSegmentation folders, CVAT mask exports) and fume export-for-labelling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from fume.cli import app
from fume.data.frames import load_frame, load_mask
from fume.errors import DataError

runner = CliRunner()
H, W = 24, 32
COLOURS = {"Background": (0, 0, 0), "Outlet": (255, 0, 0), "Gas Plume": (0, 255, 0)}


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def mask_of(k: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[10:14, W - 6 :] = 1
    mask[4 + k : 16 + k, 6 : W - 8] = 2
    return mask


def frame_of(k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)  # RGB: imported as gray


def one_line_error(result, *words: str) -> None:
    """Under CliRunner a user error is a DataError of one line (`fume` prints it as "error: ..."), exit 1."""
    assert result.exit_code == 1 and isinstance(result.exception, DataError), result.output
    message = str(result.exception)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def make_mmseg(src: Path, indices: tuple[int, int, int] = (0, 1, 2)) -> dict[str, np.ndarray]:
    """Two train frames and one val frame; label maps hold `indices` for background/tube/gas."""
    expected = {}
    for k, (split, stem) in enumerate([("train", "a"), ("train", "b"), ("val", "c")]):
        save(src / "img_dir" / split / f"{stem}.png", frame_of(k))
        mask = mask_of(k)
        save(src / "ann_dir" / split / f"{stem}.png", np.array(indices, np.uint8)[mask])
        expected[stem] = mask
    return expected


def make_cvat(src: Path, n: int = 3) -> dict[str, np.ndarray]:
    lines = ["# label:color_rgb:parts:actions"] + [f"{name}:{r},{g},{b}::" for name, (r, g, b) in COLOURS.items()]
    src.mkdir(parents=True, exist_ok=True)
    (src / "labelmap.txt").write_text("\n".join(lines) + "\n")
    palette = np.array(list(COLOURS.values()), np.uint8)
    expected = {}
    for k in range(n):
        stem = f"frame_{k:03d}"
        save(src / "JPEGImages" / f"{stem}.png", frame_of(k))
        mask = mask_of(k)
        save(src / "SegmentationClass" / f"{stem}.png", palette[mask])
        expected[stem] = mask
    (src / "ImageSets" / "Segmentation").mkdir(parents=True)
    (src / "ImageSets" / "Segmentation" / "default.txt").write_text("\n".join(expected) + "\n")
    return expected


def gray(k: int) -> np.ndarray:
    return np.asarray(Image.fromarray(frame_of(k)).convert("L"))


def test_mmseg_import_validates_with_exact_masks(tmp_path: Path) -> None:
    expected = make_mmseg(tmp_path / "rec01", indices=(5, 7, 9))
    root = tmp_path / "root"
    result = run("import-layout", tmp_path / "rec01", "--format", "mmseg", "--out", root, "--gas", "co2", "--ph", "6.2",
                 "--label-map", "background=5,tube=7,gas=9")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(root / "annotations.csv")
    assert len(table) == 3
    assert set(table["original_sample_id"]) == {"rec01"} and set(table["class_name"]) == {"Healthy"}
    assert set(table["augmentation_id"]) == {0} and set(table["gas_type"]) == {"co2"}
    for k, (_, row) in enumerate(table.iterrows()):
        stem = Path(row["frame_path"]).stem
        assert np.array_equal(load_mask(root / row["mask_path"]), expected[stem])
        assert np.array_equal(load_frame(root / row["frame_path"]), gray(k))
        assert Image.open(root / row["frame_path"]).mode == "L"
    result = run("validate-data", root)
    assert result.exit_code == 0 and "OK: no defects found" in result.output, result.output


def test_mmseg_unknown_index_is_one_line(tmp_path: Path) -> None:
    make_mmseg(tmp_path / "rec", indices=(0, 1, 3))
    result = run("import-layout", tmp_path / "rec", "--format", "mmseg", "--out", tmp_path / "root", "--gas", "co2", "--ph", "6.2")
    one_line_error(result, "[3]", "ann_dir")
    assert not (tmp_path / "root" / "annotations.csv").exists()


def test_cvat_import_maps_colours_to_classes(tmp_path: Path) -> None:
    expected = make_cvat(tmp_path / "task_7")
    root = tmp_path / "root"
    result = run("import-layout", tmp_path / "task_7", "--format", "cvat-mask", "--out", root, "--gas", "ch4", "--ph", "5.0")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(root / "annotations.csv")
    assert list(table["original_sample_id"]) == ["task_7"] * 3 and set(table["class_name"]) == {"Acidotic"}
    for _, row in table.iterrows():
        mask = load_mask(root / row["mask_path"])
        assert np.array_equal(mask, expected[Path(row["mask_path"]).stem])
        assert set(np.unique(mask).tolist()) == {0, 1, 2}
    assert run("validate-data", root).exit_code == 0


def test_cvat_unknown_colour_name_and_size_mismatch(tmp_path: Path) -> None:
    args = ("--format", "cvat-mask", "--out", tmp_path / "root", "--gas", "co2", "--ph", "6.5")
    src = tmp_path / "colour"
    make_cvat(src)
    bad = np.zeros((H, W, 3), np.uint8)
    bad[0, 0] = (1, 2, 3)
    save(src / "SegmentationClass" / "frame_001.png", bad)
    one_line_error(run("import-layout", src, *args), "frame_001.png", "(1,2,3)", "allowed colours")

    src = tmp_path / "name"
    make_cvat(src)
    text = (src / "labelmap.txt").read_text().replace("Outlet", "Smoke")
    (src / "labelmap.txt").write_text(text)
    one_line_error(run("import-layout", src, *args), "labelmap.txt", "'Smoke'", "--label-map")
    assert run("import-layout", src, *args, "--label-map", "smoke=tube").exit_code == 0  # an override fixes it

    src = tmp_path / "size"
    make_cvat(src)
    save(src / "JPEGImages" / "frame_002.png", np.zeros((H + 2, W), np.uint8))
    one_line_error(run("import-layout", src, *args), "JPEGImages/frame_002.png", "SegmentationClass/frame_002.png")


def test_reimport_replaces_rows_and_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_mmseg(tmp_path / "m")
    make_cvat(tmp_path / "c", n=3)
    base = ("--out", root, "--gas", "co2", "--ph", "5.9")
    assert run("import-layout", tmp_path / "m", "--format", "mmseg", *base).exit_code == 0
    assert run("import-layout", tmp_path / "c", "--format", "cvat-mask", *base, "--recording-id", "r2").exit_code == 0
    assert len(pd.read_csv(root / "annotations.csv")) == 6
    for (src_dir, old, new) in ((tmp_path / "c", "frame_002", "frame_009"),):
        for folder in ("JPEGImages", "SegmentationClass"):
            (src_dir / folder / f"{old}.png").rename(src_dir / folder / f"{new}.png")
        sets = src_dir / "ImageSets" / "Segmentation" / "default.txt"
        sets.write_text(sets.read_text().replace(old, new))
    result = run("import-layout", tmp_path / "c", "--format", "cvat-mask", *base, "--recording-id", "r2")
    assert result.exit_code == 0 and "replacing 3" in result.output, result.output
    table = pd.read_csv(root / "annotations.csv", dtype={"original_sample_id": str})
    assert len(table) == 6 and table["frame_path"].is_unique
    assert sorted(table["original_sample_id"]) == ["m"] * 3 + ["r2"] * 3
    assert not (root / "images" / "co2" / "r2" / "frame_002.png").exists()  # the old file went with its row
    assert (root / "images" / "co2" / "r2" / "frame_009.png").is_file()
    assert run("validate-data", root).exit_code == 0


def test_export_for_labelling_round_trip(tmp_path: Path) -> None:
    root, again = tmp_path / "root", tmp_path / "again"
    make_cvat(tmp_path / "rec", n=4)
    assert run("import-layout", tmp_path / "rec", "--format", "cvat-mask", "--out", root, "--gas", "co2", "--ph", "6.5").exit_code == 0
    make_mmseg(tmp_path / "other")
    assert run("import-layout", tmp_path / "other", "--format", "mmseg", "--out", root, "--gas", "ch4", "--ph", "6.5").exit_code == 0
    result = run("export-for-labelling", root, "--format", "cvat-mask", "--out", tmp_path / "cvat", "--gas", "co2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cvat" / "labelmap.txt").is_file()
    assert len(list((tmp_path / "cvat" / "SegmentationClass").glob("*.png"))) == 4
    assert Image.open(next((tmp_path / "cvat" / "SegmentationClass").glob("*.png"))).mode == "RGB"
    result = run("import-layout", tmp_path / "cvat", "--format", "cvat-mask", "--out", again, "--gas", "co2", "--ph", "6.5",
                 "--recording-id", "rec")
    assert result.exit_code == 0, result.output
    first = pd.read_csv(root / "annotations.csv")
    first = first[first["gas_type"] == "co2"].reset_index(drop=True)
    second = pd.read_csv(again / "annotations.csv")
    assert first.equals(second)
    for (_, a), (_, b) in zip(first.iterrows(), second.iterrows(), strict=True):
        assert np.array_equal(load_frame(root / a["frame_path"]), load_frame(again / b["frame_path"]))
        assert np.array_equal(load_mask(root / a["mask_path"]), load_mask(again / b["mask_path"]))


def test_16bit_recording_round_trip_through_cvat(tmp_path: Path) -> None:
    """One recording of 16-bit frames out to CVAT (--recording) and back in: counts unchanged, the
    other recording left out of the export."""
    from fume.contract import GAS
    from fume.data.frames import write_frame
    from fume.data.importers import EXPORT_COLOURS

    root = tmp_path / "root"
    counts = [np.random.default_rng(k).integers(6000, 9000, (H, W)).astype(np.uint16) for k in range(3)]
    for k, frame in enumerate(counts):
        write_frame(tmp_path / "frames16" / f"f{k}", frame)
    for rid in ("cow1", "cow2"):
        result = run("import-recording", tmp_path / "frames16", "--gas", "co2", "--ph", "6.5", "--out", root, "--recording-id", rid)
        assert result.exit_code == 0, result.output
    result = run("export-for-labelling", root, "--out", tmp_path / "cvat", "--recording", "cow2")
    assert result.exit_code == 0, result.output
    exported = sorted((tmp_path / "cvat" / "JPEGImages").glob("*.png"))
    assert len(exported) == 3 and all(load_frame(p).dtype == np.uint16 for p in exported)
    for k, path in enumerate(exported):  # a labeller draws gas in CVAT
        save(tmp_path / "cvat" / "SegmentationClass" / path.name, np.where(mask_of(k)[..., None] == 2, EXPORT_COLOURS[GAS], (0, 0, 0)).astype(np.uint8))
    result = run("import-layout", tmp_path / "cvat", "--format", "cvat-mask", "--out", root, "--gas", "co2", "--ph", "6.5", "--recording-id", "cow2")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(root / "annotations.csv", keep_default_na=False)
    labelled = table[table["original_sample_id"] == "cow2"]
    assert len(labelled) == 3 and (labelled["mask_path"] != "").all()  # the unlabelled rows were replaced
    assert (table[table["original_sample_id"] == "cow1"]["mask_path"] == "").all()
    for k, row in enumerate(labelled.sort_values("frame_path").itertuples()):
        np.testing.assert_array_equal(load_frame(root / row.frame_path), counts[k])
        np.testing.assert_array_equal(load_mask(root / row.mask_path) == 2, mask_of(k) == 2)
    result = run("export-for-labelling", root, "--out", tmp_path / "none", "--recording", "cow9")
    assert result.exit_code == 1 and "has no frames of recording cow9" in str(result.exception)
