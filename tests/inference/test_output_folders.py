"""An output folder holds one run's results: `fume predict` (batch and video mode) and `fume evaluate`
refuse a folder holding an earlier run's outputs unless --overwrite, which replaces them (the new
run is staged, then the old outputs removed and the new moved in); files FUME did not write stay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from fume.cli import app
from fume.errors import ConfigError

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def user_files(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "notes.txt").write_text("mine\n")
    (out / "json").mkdir(exist_ok=True)
    (out / "json" / "README.md").write_text("mine too\n")


def test_predict_twice_refuses_then_replaces_only_fume_outputs(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    user_files(out)
    table = dataset / "paired_val_annotations.csv"
    result = run("predict", "-k", checkpoint, "--input", table, "--save-masks", "--out", out)
    assert result.exit_code == 0, result.output
    first = files_under(out)
    assert any(f.startswith("overlays/") for f in first) and any(f.startswith("masks/") for f in first)

    one = pd.read_csv(table)["co2_frame"][0].replace("\\", "/").removeprefix("mmseg_dataset/")
    second = ["predict", "-k", checkpoint, "--co2", dataset / one, "--no-overlays", "--out", out]
    result = run(*second)
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert f"{out} already holds the outputs of an earlier run" in message and "--overwrite" in message
    assert "json/" in message and "predictions.csv" in message
    assert files_under(out) == first  # refused before anything was written

    result = run(*second, "--overwrite")
    assert result.exit_code == 0, result.output
    stem = Path(one).stem.replace("_co2", "")
    assert files_under(out) == sorted([f"json/{stem}.json", "predictions.csv", "notes.txt", "json/README.md"])
    assert len(pd.read_csv(out / "predictions.csv")) == 1
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "json" / "README.md").read_text() == "mine too\n"
    assert not (out / "overlays").exists() and not (out / "masks").exists()  # emptied FUME folders go too


def test_video_mode_shares_the_rule(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    """Video mode into a folder of an earlier batch run: refused, then with --overwrite only its CSV remains."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, path in enumerate(sorted((dataset).rglob("*co2*.png"))[:2]):
        shutil.copy(path, frames / f"{i}.png")
    out = tmp_path / "pred"
    result = run("predict", "-k", checkpoint, "--input", dataset / "paired_val_annotations.csv", "--out", out)
    assert result.exit_code == 0, result.output
    video = ["predict", "-k", checkpoint, "--co2-video", frames, "--no-video", "--out", out]
    assert isinstance(run(*video).exception, ConfigError)
    result = run(*video, "--overwrite")
    assert result.exit_code == 0, result.output
    assert files_under(out) == ["video_predictions.csv"]
    assert isinstance(run(*video).exception, ConfigError)  # and a video run is an earlier run too


def test_evaluate_twice_refuses_then_replaces(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    user_files(out)
    result = run("evaluate", "-k", checkpoint, "--split", "val", "--save-masks", "--out", out)
    assert result.exit_code == 0, result.output
    first = files_under(out)
    assert "metrics.json" in first and any(f.startswith("masks/") for f in first)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the staging folder is gone

    again = ["evaluate", "-k", checkpoint, "--split", "val", "--no-save-masks", "--out", out]
    result = run(*again)
    assert isinstance(result.exception, ConfigError) and "--overwrite" in str(result.exception)
    assert files_under(out) == first

    result = run(*again, "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "masks").exists()
    assert "co2_pred_mask" not in pd.read_csv(out / "predictions.csv").columns
    assert {"metrics.json", "predictions.csv", "notes.txt", "json/README.md"} <= set(files_under(out))
    assert not [f for f in files_under(out) if f.startswith("masks/")]
