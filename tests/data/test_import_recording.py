"""`fume import-recording`: a video (PyAV) or a folder of frames -> unlabelled rows of FUME's layout;
re-importing replaces; validate-data and pair skip the unlabelled frames with a count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fume.cli import app
from fume.data.frames import load_frame
from fume.data.generate import generate_dataset
from fume.data.layout import read_annotations
from fume.errors import DataError
from fume.io import VideoWriter, write_png

runner = CliRunner()
FPS = 10


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def make_video(path: Path, frames: int = 20, fps: float = FPS) -> Path:
    writer = VideoWriter(path, fps)
    for i in range(frames):
        gray = np.full((48, 64), 10 * i % 256, np.uint8)
        writer.write(np.repeat(gray[:, :, None], 3, axis=2))
    return writer.close()


def make_folder(path: Path, frames: int = 12) -> Path:
    for i in range(frames):
        write_png(path / f"img_{i}.png", np.full((40, 56), 20 * i % 256, np.uint8))
    return path


def rows_of(root: Path, recording: str) -> pd.DataFrame:
    table = pd.read_csv(root / "annotations.csv", dtype=str, keep_default_na=False)
    return table[table["original_sample_id"] == recording].reset_index(drop=True)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "cow17.mp4")


def test_video_every_and_time_range(tmp_path, video):
    root = tmp_path / "ds"
    result = run("import-recording", video, "--gas", "co2", "--ph", "6.2", "--out", root, "--every", 2, "--start", 0.5, "--end", 1.5)
    assert result.exit_code == 0, result.output
    rows = rows_of(root, "cow17")  # default recording id: the file's stem
    # frames at 0.5 ... 1.5 s (indices 5..15), every 2nd: 5, 7, 9, 11, 13, 15
    assert len(rows) == 6
    assert np.allclose(rows["timestamp"].astype(float), [0.5, 0.7, 0.9, 1.1, 1.3, 1.5])
    assert list(rows["frame_path"]) == [f"recordings/cow17/co2/frame_{i:06d}.png" for i in (5, 7, 9, 11, 13, 15)]
    assert set(rows["mask_path"]) == {""}
    assert set(rows["class_name"]) == {"Healthy"} and set(rows["class_id"]) == {"0"}
    assert set(rows["gas_type"]) == {"co2"} and set(rows["augmentation_id"]) == {"0"}
    assert "animal_id" not in rows.columns
    for rel in rows["frame_path"]:
        frame = load_frame(root / rel)
        assert frame.dtype == np.uint8 and frame.ndim == 2
    assert sorted(p.name for p in (root / "recordings/cow17/co2").iterdir()) == [Path(r).name for r in rows["frame_path"]]
    table = read_annotations(root)  # the layout's reader accepts the rows
    assert len(table) == 6


def test_folder_with_ids_and_class_from_ph(tmp_path):
    root = tmp_path / "ds"
    folder = make_folder(tmp_path / "frames")
    result = run("import-recording", folder, "--gas", "ch4", "--ph", "5.9", "--out", root, "--fps", 10,
                 "--every", 3, "--recording-id", "rec_A", "--animal-id", "007")
    assert result.exit_code == 0, result.output
    rows = rows_of(root, "rec_A")
    assert len(rows) == 4  # frames 0, 3, 6, 9 of 12
    assert np.allclose(rows["timestamp"].astype(float), [0.0, 0.3, 0.6, 0.9])
    assert set(rows["class_name"]) == {"Transitional"} and set(rows["class_id"]) == {"1"}
    assert set(rows["animal_id"]) == {"007"}
    assert load_frame(root / rows["frame_path"][1])[0, 0] == 60  # img_3, in natural order


def test_reimport_replaces_rows_and_frames(tmp_path, video):
    root = tmp_path / "ds"
    folder = make_folder(tmp_path / "frames")
    assert run("import-recording", folder, "--gas", "ch4", "--ph", "5.3", "--out", root, "--recording-id", "other").exit_code == 0
    assert run("import-recording", video, "--gas", "co2", "--ph", "6.5", "--out", root, "--every", 2).exit_code == 0
    assert len(rows_of(root, "cow17")) == 10
    again = run("import-recording", video, "--gas", "co2", "--ph", "6.5", "--out", root, "--every", 2)
    assert again.exit_code == 0, again.output
    assert len(rows_of(root, "cow17")) == 10  # no duplicates
    result = run("import-recording", video, "--gas", "co2", "--ph", "6.5", "--out", root, "--every", 5)
    assert result.exit_code == 0, result.output
    rows = rows_of(root, "cow17")
    assert list(rows["frame_path"]) == [f"recordings/cow17/co2/frame_{i:06d}.png" for i in (0, 5, 10, 15)]
    assert sorted(p.name for p in (root / "recordings/cow17/co2").iterdir()) == [Path(r).name for r in rows["frame_path"]]
    assert not (root / "recordings/cow17/co2/frame_000002.png").exists()
    assert len(rows_of(root, "other")) == 12  # another recording is untouched
    assert len(pd.read_csv(root / "annotations.csv")) == 16
    assert not list(root.rglob(".*importing*"))


def test_unknown_ph_and_missing_file_are_one_line(tmp_path, video):
    root = tmp_path / "ds"
    result = run("import-recording", video, "--gas", "co2", "--ph", "6.3", "--out", root)
    assert result.exit_code == 1 and isinstance(result.exception, DataError)
    message = str(result.exception)
    assert "\n" not in message and "6.3" in message and "6.5" in message and "5.0" in message
    assert not (root / "annotations.csv").exists() and not (root / "recordings").exists()
    result = run("import-recording", tmp_path / "nope.mp4", "--gas", "co2", "--ph", "6.2", "--out", root)
    assert result.exit_code == 1 and isinstance(result.exception, DataError)
    assert "\n" not in str(result.exception) and "nope.mp4" in str(result.exception)
    result = run("import-recording", video, "--gas", "co2", "--ph", "6.2", "--out", root, "--start", 5)
    assert result.exit_code == 1 and isinstance(result.exception, DataError) and "no frame" in str(result.exception)
    assert not (root / "annotations.csv").exists()


@pytest.fixture()
def mixed_root(tmp_path, video) -> Path:
    """A small labelled dataset plus an imported (unlabelled) CO2 recording of 4 frames."""
    root = tmp_path / "ds"
    generate_dataset(root, n_originals=24, augmentations=0, size=(64, 48), seed=1)
    result = run("import-recording", video, "--gas", "co2", "--ph", "6.5", "--out", root, "--every", 5)
    assert result.exit_code == 0, result.output
    return root


def test_validate_counts_unlabelled_frames(mixed_root):
    result = run("validate-data", mixed_root)
    assert result.exit_code == 0, result.output
    assert "4 unlabelled frames (no mask) skipped" in result.output and "OK" in result.output


def test_pair_leaves_unlabelled_frames_out(mixed_root):
    assert run("split", mixed_root, "--seed", 0).exit_code == 0
    result = run("pair", mixed_root)
    assert result.exit_code == 0, result.output
    splits = {s: pd.read_csv(mixed_root / f"{s}_annotations.csv", keep_default_na=False) for s in ("train", "val", "test")}
    left_out = {s: int((t["mask_path"] == "").sum()) for s, t in splits.items()}
    assert sum(left_out.values()) == 4
    for split, n in left_out.items():
        paired = pd.read_csv(mixed_root / f"paired_{split}_annotations.csv", keep_default_na=False)
        assert not paired["co2_frame"].str.startswith("recordings/").any()
        assert not ((paired["co2_frame"] != "") & (paired["co2_mask"] == "")).any()
        if n:
            assert f"{n} unlabelled frames left out" in result.output


def test_imported_frames_are_a_predict_input(tmp_path, video):
    from fume.config import FumeConfig
    from fume.models.checkpoint import build_model

    root = tmp_path / "ds"
    assert run("import-recording", video, "--gas", "co2", "--ph", "6.5", "--out", root, "--every", 5).exit_code == 0
    config = FumeConfig(data={"dataset_root": str(root), "image_size": [64, 64]})
    checkpoint = tmp_path / "model.ckpt"
    model = build_model(config.model)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "hyper_parameters": {"config": config.to_dict()}}, checkpoint)
    result = run("predict", "--checkpoint", checkpoint, "--input", root / "recordings", "--out", tmp_path / "pred", "--no-overlays")
    assert result.exit_code == 0, result.output
    predictions = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert len(predictions) == 4 and predictions["co2_frame"].str.endswith(".png").all()
    assert predictions["ch4_frame"].isna().all()  # a CO2 recording alone: CH4 marked absent
