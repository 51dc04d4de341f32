"""From a camera's files to a dataset and back out through the model: FLIR sequences and 16-bit
frames imported with their bit depth, validate-data's bit-depth report and mixed-depth defect, and
the intensity window travelling with the model (checkpoint config, ONNX metadata) into predict."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fume.cli import app
from fume.config import FumeConfig
from fume.data.flir import FlirSequence
from fume.data.frames import load_frame, write_frame
from fume.data.layout import read_annotations
from fume.errors import DataError

pytest.importorskip("flirpy", reason='FLIR tests need the extra: pip install "fume[flir]"')

runner = CliRunner()
SEQ = Path(__file__).resolve().parents[1] / "fixtures" / "flir" / "test_first2.seq"  # 2 frames, 640x512


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_flir_sequence_becomes_16bit_rows(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    result = run("import-recording", SEQ, "--gas", "co2", "--ph", "5.9", "--out", root, "--recording-id", "cow7_a")
    assert result.exit_code == 0, result.output
    rows = read_annotations(root)
    assert rows["timestamp"].astype(float).tolist() == pytest.approx([0.0, 2.091])  # the camera's clock
    assert (rows["original_sample_id"] == "cow7_a").all() and (rows["mask_path"] == "").all()
    for (_, expected), path in zip(FlirSequence(SEQ), rows["frame_path"]):
        frame = load_frame(root / path)
        assert path.endswith(".png") and frame.dtype == np.uint16
        np.testing.assert_array_equal(frame, expected)  # raw counts, nothing lost
    report = run("validate-data", root)
    assert "frames by bit depth: 16-bit 2" in report.output and "2 unlabelled frames" in report.output


def test_radiometric_import_keeps_temperatures(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    assert run("import-recording", SEQ, "--gas", "ch4", "--ph", "6.5", "--out", root, "--radiometric").exit_code == 0
    rows = read_annotations(root)
    for (_, expected), path in zip(FlirSequence(SEQ, temperature=True), rows["frame_path"]):
        assert path.endswith(".tiff")
        np.testing.assert_array_equal(load_frame(root / path), expected)


def test_missing_extra_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "flirpy" or m.startswith(("flirpy.", "flyr"))] + ["flirpy", "flyr"]:
        monkeypatch.setitem(sys.modules, name, None)
    result = run("import-recording", SEQ, "--gas", "co2", "--ph", "6.5", "--out", tmp_path / "ds")
    assert result.exit_code == 1 and isinstance(result.exception, DataError)  # printed as one `error: ...` line, exit 1
    assert str(result.exception) == f'cannot read {SEQ}: FLIR files need the optional extra: pip install "fume[flir]"'
    assert not (tmp_path / "ds").exists()


def test_validate_flags_a_recording_that_mixes_bit_depths(tmp_path: Path) -> None:
    frame8 = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    write_frame(tmp_path / "rec" / "a", frame8)
    write_frame(tmp_path / "rec" / "b", frame8.astype(np.uint16) * 257)
    write_frame(tmp_path / "other" / "c", frame8)
    rows = [(p, "r1") for p in ("rec/a.png", "rec/b.png")] + [("other/c.png", "r2")]
    pd.DataFrame([{"frame_path": p, "mask_path": "", "gas_type": "co2", "ph_value": 6.5, "class_name": "Healthy", "class_id": 0,
                   "original_sample_id": r, "augmentation_id": 0} for p, r in rows]).to_csv(tmp_path / "annotations.csv", index=False)
    result = run("validate-data", tmp_path)
    assert result.exit_code == 1
    assert "frames by bit depth: 16-bit 1, 8-bit 2" in result.output
    assert "mixed_bit_depth" in result.output and "recording r1 (CO2) mixes 16-bit (rec/b.png), 8-bit (rec/a.png)" in result.output
    assert "r2" not in result.output.split("mixed_bit_depth", 1)[1]


def _checkpoint(path: Path, config: FumeConfig) -> Path:
    from fume.models.checkpoint import build_model

    torch.manual_seed(0)
    model = build_model(config.model)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "hyper_parameters": {"config": config.to_dict()}}, path)
    return path


def _inputs_seen(predictor, frame: np.ndarray) -> np.ndarray:
    """The CO2 input the predictor hands its backend for `frame`."""
    seen = {}
    backend = predictor.backend

    def spy(co2, ch4, modality):
        seen["co2"] = co2.copy()
        return backend(co2, ch4, modality)

    predictor.backend = spy
    predictor.predict(co2=frame)
    predictor.backend = backend
    return seen["co2"]


def test_window_travels_with_the_model_into_predict(tmp_path: Path) -> None:
    """The same pictures as 8-bit (auto) and as 16-bit x257 under a model trained with the fixed
    window [0, 65535]: the same model input, from a checkpoint and from its ONNX file."""
    from fume.inference.onnx import onnx_bytes
    from fume.inference.predictor import Predictor
    from fume.models.checkpoint import load_model_from_checkpoint

    rng = np.random.default_rng(1)
    for i in range(3):
        for gas in ("co2", "ch4"):
            frame = rng.integers(100, 140, (48, 64), dtype=np.uint8)  # a faint scene: a percentile window would stretch it
            write_frame(tmp_path / "eight" / gas / f"p{i}", frame)
            write_frame(tmp_path / "sixteen" / gas / f"p{i}", frame.astype(np.uint16) * 257)
    base = {"data": {"image_size": [64, 64]}}
    eight = _checkpoint(tmp_path / "eight.ckpt", FumeConfig.model_validate(base))
    sixteen = _checkpoint(tmp_path / "sixteen.ckpt", FumeConfig.model_validate({"data": {**base["data"], "frame_window": [0, 65535]}}))
    for name, checkpoint in (("eight", eight), ("sixteen", sixteen)):
        result = run("predict", "--checkpoint", checkpoint, "--input", tmp_path / name, "--out", tmp_path / f"pred_{name}")
        assert result.exit_code == 0, result.output
        assert len(pd.read_csv(tmp_path / f"pred_{name}" / "predictions.csv")) == 3
        assert load_frame(tmp_path / f"pred_{name}" / "overlays" / "p0_co2.png").dtype == np.uint8  # 16-bit frames drawn through the window

    frame8 = load_frame(tmp_path / "eight" / "co2" / "p0.png")
    frame16 = load_frame(tmp_path / "sixteen" / "co2" / "p0.png")
    reference = _inputs_seen(Predictor.from_checkpoint(eight), frame8)
    level = 1 / 255 + 1e-6  # the 8-bit frame is resized in whole levels, the windowed one in floats
    np.testing.assert_allclose(_inputs_seen(Predictor.from_checkpoint(sixteen), frame16), reference, atol=level)
    model, config = load_model_from_checkpoint(sixteen)
    onnx_file = tmp_path / "sixteen.onnx"
    onnx_file.write_bytes(onnx_bytes(model, config, (64, 64)))
    from_onnx = Predictor.from_onnx(onnx_file)
    assert from_onnx.frame_window == config.data.frame_window  # stored in the file's metadata
    np.testing.assert_allclose(_inputs_seen(from_onnx, frame16), reference, atol=level)
    # The control: `auto` takes the 16-bit frame's own 1-99 % range, a very different input.
    assert np.abs(_inputs_seen(Predictor.from_checkpoint(eight), frame16) - reference).max() > 0.2


def test_video_mode_reads_a_flir_sequence(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path / "m.ckpt", FumeConfig.model_validate({"data": {"image_size": [64, 64]}}))
    result = run("predict", "--checkpoint", checkpoint, "--co2-video", SEQ, "--out", tmp_path / "video")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "video" / "video_predictions.csv")
    assert table["time_s"].tolist() == pytest.approx([0.0, 2.091]) and len(table) == 2
