"""Hostile or degenerate data: decompression bombs and empty tables end in a named defect or a
one-line DataError, never a traceback or an empty table written as if all was well."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from hostile_files import write_bomb_png  # tests/ is on sys.path (tests/conftest.py)

from fume.data.frames import ImageTooLargeError, image_size, load_frame, load_mask
from fume.data.layout import ANNOTATION_COLUMNS, SPLITS, split_table_name
from fume.data.pairing import pair_dataset
from fume.data.split import split_dataset
from fume.data.validate import validate_dataset
from fume.errors import DataError


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")
    assert path.stat().st_size < 200_000
    return path


def test_a_bomb_is_refused_from_its_header(bomb: Path) -> None:
    for load in (load_frame, load_mask, image_size):  # PIL refuses 400 megapixels at open
        with pytest.raises(ImageTooLargeError) as err:
            load(bomb)
        message = str(err.value)
        assert str(bomb) in message and "400000000 pixels" in message and "50 megapixels" in message
        assert "\n" not in message
    # Under PIL's own limit, over FUME's: refused from the header, with the size in W x H.
    mid = write_bomb_png(bomb.parent / "mid.png", 10000, 6000)
    assert image_size(mid) == (10000, 6000)
    with pytest.raises(ImageTooLargeError, match=r"frame .*mid.png is 10000x6000 = 60.0 megapixels, over the limit of 50 megapixels"):
        load_frame(mid)


def test_the_pixel_limit_is_configurable(tmp_path: Path) -> None:
    from fume.config import DataConfig

    small = write_bomb_png(tmp_path / "small.png", 64, 48)
    assert load_frame(small).shape == (48, 64)
    with pytest.raises(ImageTooLargeError, match="64x48"):
        load_frame(small, max_pixels=1000)
    assert DataConfig().max_image_pixels == 50_000_000
    assert DataConfig(max_image_pixels=1000).max_image_pixels == 1000


def test_validate_reports_a_bomb_and_checks_the_other_files(real_layout: Path, bomb: Path) -> None:
    table = pd.read_csv(real_layout / "annotations.csv")
    frame = real_layout / table["frame_path"][0].replace("\\", "/").removeprefix("mmseg_dataset/")
    shutil.copy(bomb, frame)
    report = validate_dataset(real_layout)
    assert not report.ok
    assert list(report.defects) == ["image_too_large"]
    [message] = report.defects["image_too_large"]
    assert "annotations.csv row 2" in message and str(frame) in message and "400000000 pixels" in message
    assert report.files_checked == 2 * len(table)  # every other file was still read
    assert "image_too_large" in report.render()
    # The limit is the caller's: the 32x24 frames of this dataset are over a limit of 100 pixels.
    tight = validate_dataset(real_layout, max_image_pixels=100)
    assert len(tight.defects["image_too_large"]) == 2 * len(table)


def header_only(root: Path, name: str = "annotations.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(",".join(ANNOTATION_COLUMNS) + "\n")
    return path


def test_an_empty_dataset_is_a_defect_not_ok(tmp_path: Path) -> None:
    header_only(tmp_path)
    report = validate_dataset(tmp_path)
    assert not report.ok
    assert report.defects == {"empty_table": ["annotations.csv: no rows, only a header"]}
    assert "OK" not in report.render() and "empty_table" in report.render()


def test_split_and_pair_refuse_empty_tables_and_write_nothing(tmp_path: Path) -> None:
    source = header_only(tmp_path / "a")
    with pytest.raises(DataError, match="annotations.csv has no rows, only a header; nothing to split") as err:
        split_dataset(tmp_path / "a")
    assert str(source) in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["annotations.csv"]

    for split in SPLITS:
        header_only(tmp_path / "b", split_table_name(split))
    with pytest.raises(DataError, match="no rows"):
        split_dataset(tmp_path / "b")
    with pytest.raises(DataError, match=r"train_annotations.csv has no rows, only a header; nothing to pair"):
        pair_dataset(tmp_path / "b")
    assert not list((tmp_path / "b").glob("paired_*"))


def test_pair_refuses_one_empty_split_before_writing_any(real_layout: Path) -> None:
    split_dataset(real_layout, seed=0)
    header_only(real_layout, split_table_name("val"))
    with pytest.raises(DataError, match=r"val_annotations.csv has no rows"):
        pair_dataset(real_layout)
    assert not list(real_layout.glob("paired_*"))
    report = validate_dataset(real_layout, check_files=False)
    assert report.defects == {"empty_table": ["val_annotations.csv: no rows, only a header"]}


def test_split_refuses_ratios_that_leave_a_split_empty(real_layout: Path) -> None:
    before = sorted(p.name for p in real_layout.iterdir())
    with pytest.raises(DataError, match=r"split val of .*annotations.csv would have no rows: 24 recordings with ratios \[0.8, 0.0, 0.2\]"):
        split_dataset(real_layout, ratios=(0.8, 0.0, 0.2))
    # Two recordings cannot fill three splits.
    table = pd.read_csv(real_layout / "annotations.csv")
    table[table["original_sample_id"].isin(["ph6.5_co2_0", "ph6.5_ch4_0"])].to_csv(real_layout / "annotations.csv", index=False)
    with pytest.raises(DataError, match=r"would have no rows: 2 recordings"):
        split_dataset(real_layout)
    assert sorted(p.name for p in real_layout.iterdir()) == before


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fume.cli import app

    header_only(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["validate-data", str(tmp_path)])
    assert result.exit_code == 1 and "empty_table" in result.output and "OK" not in result.output
    result = runner.invoke(app, ["split", str(tmp_path)])
    assert isinstance(result.exception, DataError) and "has no rows" in str(result.exception)
