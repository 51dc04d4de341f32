from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import write_png
from PIL import Image

from fume.config import LabelConfig
from fume.data.frames import load_frame, load_mask
from fume.data.layout import ANNOTATION_COLUMNS, normalise_path, read_annotations
from fume.errors import DataError
from fume.io import write_csv


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mmseg_dataset\\img_dir\\train\\a.png", "img_dir/train/a.png"),
        ("mmseg_dataset/img_dir/train/a.png", "img_dir/train/a.png"),
        ("img_dir\\train\\a.png", "img_dir/train/a.png"),
        ("img_dir/train/a.png", "img_dir/train/a.png"),
        ("./mmseg_dataset\\a.png", "a.png"),
        ("  images/x.png ", "images/x.png"),
        ("data/mmseg_dataset/a.png", "data/mmseg_dataset/a.png"),  # only a leading prefix is stripped
    ],
)
def test_normalise_path(raw: str, expected: str) -> None:
    assert normalise_path(raw) == expected


def test_read_annotations_normalises_the_real_layout(real_layout: Path) -> None:
    table = read_annotations(real_layout)
    assert list(table.columns[:8]) == ANNOTATION_COLUMNS
    assert not table["frame_path"].str.contains("\\\\|mmseg_dataset").any()
    assert set(table["gas_type"]) == {"co2", "ch4"}  # 'CO2' in the CSV is lower-cased
    assert all((real_layout / p).is_file() for p in table["frame_path"])


def test_read_annotations_union_of_split_tables(real_layout: Path) -> None:
    table = pd.read_csv(real_layout / "annotations.csv")
    (real_layout / "annotations.csv").unlink()
    table.iloc[:10].to_csv(real_layout / "train_annotations.csv", index=False)
    table.iloc[10:].to_csv(real_layout / "test_annotations.csv", index=False)
    union = read_annotations(real_layout)
    assert len(union) == len(table)
    assert union["split"].value_counts().to_dict() == {"test": len(table) - 10, "train": 10}


def test_read_annotations_missing_column_names_file_and_column(tmp_path: Path) -> None:
    pd.DataFrame({"frame_path": ["a.png"], "mask_path": ["b.png"]}).to_csv(tmp_path / "annotations.csv", index=False)
    with pytest.raises(DataError, match=r"annotations.csv: missing column\(s\) \['gas_type'"):
        read_annotations(tmp_path)


def test_ids_stay_text(tmp_path: Path) -> None:
    row = dict(zip(ANNOTATION_COLUMNS, ["a.png", "b.png", "co2", 6.5, "Healthy", 0, "007", 0]))
    pd.DataFrame([row]).to_csv(tmp_path / "annotations.csv", index=False)
    assert read_annotations(tmp_path)["original_sample_id"].iloc[0] == "007"


def test_load_frame_converts_rgb_to_luma(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    write_png(tmp_path / "rgb.png", rgb)
    frame = load_frame(tmp_path / "rgb.png")
    assert frame.shape == (4, 5) and frame.dtype == np.uint8
    # ITU-R 601-2 luma: 0.299 R + 0.587 G + 0.114 B
    assert np.all(np.abs(frame.astype(int) - round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)) <= 1)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="frame file not found: .*nope.png"):
        load_frame(tmp_path / "nope.png")
    write_png(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read frame .*cut.png"):
        load_frame(tmp_path / "cut.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read mask .*text.png"):
        load_mask(tmp_path / "text.png")


def test_load_mask_keeps_palette_indices_and_rejects_colour(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "p.png"), indices)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    write_png(tmp_path / "c.png", colour)
    with pytest.raises(DataError, match="mask .*c.png is a colour image"):
        load_mask(tmp_path / "c.png")


def test_label_config_mapping() -> None:
    labels = LabelConfig()
    assert [labels.class_of_ph(p) for p in (6.5, 6.2, 5.9, 5.6, 5.3, 5.0)] == [0, 0, 1, 2, 2, 2]
    assert labels.class_of_ph(5.899999) == 1
    with pytest.raises(DataError, match="pH 7.0 is not one of the configured pH levels"):
        labels.class_of_ph(7.0)
    custom = LabelConfig(class_names=["ok", "bad"], ph_to_class={6.0: 0, 5.0: 1})
    assert custom.num_classes == 2 and custom.class_of_ph(5.0) == 1
    with pytest.raises(ValueError, match="outside 0..1"):
        LabelConfig(class_names=["ok", "bad"], ph_to_class={6.0: 2})


def test_write_csv_atomic_backs_up(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, pd.DataFrame({"a": [1]}), backup=True)
    kept = write_csv(path, pd.DataFrame({"a": [2]}), backup=True)
    kept2 = write_csv(path, pd.DataFrame({"a": [3]}), backup=True)
    assert kept is not None and kept2 is not None and kept != kept2
    assert pd.read_csv(kept)["a"].tolist() == [1]
    assert pd.read_csv(kept2)["a"].tolist() == [2]
    assert pd.read_csv(path)["a"].tolist() == [3]
