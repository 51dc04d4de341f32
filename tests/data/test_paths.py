"""Paths as people store them: one rule (fume.data.layout.resolve_table_path) for every reader."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from data_helpers import make_real_layout, simple_mask, write_png
from typer.testing import CliRunner

from fume.cli import app
from fume.data.dataset import PairedDataset
from fume.data.layout import resolve_table_path
from fume.errors import DataError

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))
from inference_helpers import make_checkpoint, make_dataset  # noqa: E402

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_windows_and_mmseg_paths_resolve(tmp_path: Path) -> None:
    write_png(tmp_path / "img" / "a.png", simple_mask())
    write_png(tmp_path / "mmseg_dataset" / "img" / "b.png", simple_mask())
    for value in ("mmseg_dataset\\img\\a.png", "mmseg_dataset/img/a.png", ".\\img\\a.png", " img/a.png "):
        assert resolve_table_path(value, tmp_path, tmp_path) == tmp_path / "img" / "a.png"
    assert resolve_table_path("mmseg_dataset\\img\\b.png", tmp_path, tmp_path) == tmp_path / "mmseg_dataset" / "img" / "b.png"
    assert resolve_table_path("", tmp_path, tmp_path) is None
    tables = tmp_path / "tables"
    tables.mkdir()
    write_png(tables / "c.png", simple_mask())  # relative to the CSV's folder only
    assert resolve_table_path("c.png", tables, tmp_path) == tables / "c.png"


def test_two_different_files_and_none_are_errors(tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    write_png(tmp_path / "x.png", simple_mask())
    write_png(tables / "x.png", simple_mask(shift=3))
    with pytest.raises(DataError, match="two different files") as err:
        resolve_table_path("x.png", tables, tmp_path, where="t.csv row 2")
    assert str(tmp_path / "x.png") in str(err.value) and str(tables / "x.png") in str(err.value)
    assert "t.csv row 2" in str(err.value)
    with pytest.raises(DataError, match="not found") as err:
        resolve_table_path("mmseg_dataset/y.png", tables, tmp_path)
    for tried in (tmp_path / "y.png", tables / "y.png", tmp_path / "mmseg_dataset" / "y.png"):
        assert str(tried) in str(err.value)


@pytest.mark.parametrize("value", ["../secret.png", "a/../../secret.png", "/etc/passwd", "C:\\data\\x.png"])
def test_outside_paths_are_refused_by_default(tmp_path: Path, value: str) -> None:
    with pytest.raises(DataError, match="absolute|leaves the dataset root") as err:
        resolve_table_path(value, tmp_path, tmp_path, where="t.csv row 5")
    assert "t.csv row 5" in str(err.value) and repr(value) in str(err.value) and "--allow-outside-root" in str(err.value)


def _outside_layout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    table = make_real_layout(root, [("r1", "co2", 6.5), ("r1", "ch4", 6.5)], copies=1)
    outside = tmp_path / "secret.png"
    shutil.copy(root / table["frame_path"][0].replace("\\", "/").removeprefix("mmseg_dataset/"), outside)
    return root, outside


@pytest.mark.parametrize("absolute", [False, True])
def test_validate_data_refuses_outside_paths_unless_allowed(tmp_path: Path, absolute: bool) -> None:
    root, outside = _outside_layout(tmp_path)
    table = pd.read_csv(root / "annotations.csv")
    table.loc[0, "frame_path"] = str(outside) if absolute else "../secret.png"
    table.to_csv(root / "annotations.csv", index=False)
    result = run("validate-data", root)
    assert result.exit_code == 1, result.output
    assert "annotations.csv row 2" in result.output and ("absolute" if absolute else "leaves the dataset root") in result.output
    result = run("validate-data", root, "--allow-outside-root")
    assert result.exit_code == 0, result.output


def test_etc_passwd_refused_by_validate_data(tmp_path: Path) -> None:
    root, _ = _outside_layout(tmp_path)
    table = pd.read_csv(root / "annotations.csv")
    table.loc[1, "mask_path"] = "/etc/passwd"
    table.to_csv(root / "annotations.csv", index=False)
    result = run("validate-data", root)
    assert result.exit_code == 1 and "'/etc/passwd' is absolute" in result.output, result.output


def _paired_row(root: Path, frame: str) -> pd.DataFrame:
    table = pd.read_csv(root / "annotations.csv")
    rel = [p.replace("\\", "/").removeprefix("mmseg_dataset/") for p in (table["frame_path"][1], table["mask_path"][1])]
    return pd.DataFrame([{
        "sample_id": "s0", "co2_frame": frame, "co2_mask": rel[1], "ch4_frame": rel[0], "ch4_mask": rel[1],
        "ph_value": 6.5, "class_id": int(table["class_id"][0]), "class_name": table["class_name"][0],
        "is_paired": True, "missing_modality": "",
    }])


@pytest.mark.parametrize("which", ["../secret.png", "/etc/passwd"])
def test_training_dataset_refuses_outside_paths(tmp_path: Path, which: str) -> None:
    root, _ = _outside_layout(tmp_path)
    csv = root / "paired_train_annotations.csv"
    _paired_row(root, which).to_csv(csv, index=False)
    with pytest.raises(DataError, match="absolute|leaves the dataset root") as err:
        PairedDataset(csv, root)
    assert str(csv) in str(err.value) and "row 2" in str(err.value) and which in str(err.value)


def test_training_dataset_accepts_outside_paths_when_allowed(tmp_path: Path) -> None:
    root, outside = _outside_layout(tmp_path)
    for value in ("../secret.png", str(outside)):
        item = PairedDataset(_paired_row(root, value), root, allow_outside_root=True)[0]
        assert item["modality_mask"].tolist() == [1.0, 1.0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = make_dataset(tmp_path_factory.mktemp("paths_dataset"), n_originals=9)
    return root, make_checkpoint(tmp_path_factory.mktemp("paths_run") / "checkpoints" / "best.ckpt", root)


def test_predict_refuses_outside_paths_with_one_line(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, checkpoint = tiny
    table = pd.read_csv(root / "paired_val_annotations.csv").head(2)
    first = root / table["co2_frame"][0].replace("\\", "/").removeprefix("mmseg_dataset/")
    shutil.copy(first, root.parent / "secret.png")
    table.loc[0, "co2_frame"] = "../secret.png"
    csv = root / "outside_val.csv"
    table.to_csv(csv, index=False)
    done = subprocess.run(
        [sys.executable, "-c", "from fume.cli import main; main()", "predict", "-k", str(checkpoint), "--input", str(csv),
         "--out", str(tmp_path / "refused")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "leaves the dataset root" in lines[0] and "outside_val.csv row 2" in lines[0], lines
    result = run("predict", "-k", checkpoint, "--input", csv, "--out", tmp_path / "allowed", "--allow-outside-root")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "allowed" / "predictions.csv")) == 2


def test_pair_out_dir_works_without_data_root(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, checkpoint = tiny
    out = tmp_path / "paired"
    result = run("pair", root, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "paired_tables.json").is_file()
    result = run("predict", "-k", checkpoint, "--input", out / "paired_val_annotations.csv", "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "pred" / "predictions.csv")) == len(pd.read_csv(out / "paired_val_annotations.csv"))
    result = run("export", "-k", checkpoint, "--out", tmp_path / "m.onnx", "--quantize", "int8",
                 "--calibration", out / "paired_train_annotations.csv", "--validation", out / "paired_val_annotations.csv",
                 "--calibration-pairs", "4")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.int8.onnx").is_file() or list(tmp_path.glob("*int8*.onnx"))


def test_the_config_key_decides_for_training(tmp_path: Path) -> None:
    from fume.config import FumeConfig
    from fume.training.datamodule import make_dataset

    root, _ = _outside_layout(tmp_path)
    _paired_row(root, "../secret.png").to_csv(root / "paired_train_annotations.csv", index=False)
    config = FumeConfig(data={"dataset_root": str(root), "image_size": [64, 64]})
    with pytest.raises(DataError, match="leaves the dataset root"):
        make_dataset(config, "train")
    allowed = config.model_copy(update={"data": config.data.model_copy(update={"allow_outside_root": True})})
    assert len(make_dataset(allowed, "train")) == 1
