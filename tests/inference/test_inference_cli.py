"""`fume predict`, `fume export`, `fume benchmark` and `fume generate --sequence` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fume.cli import app
from fume.inference.benchmark import RESULT_FIELDS

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_predict_one_pair_and_a_csv(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    table = pd.read_csv(dataset / "paired_val_annotations.csv")
    co2 = dataset / table["co2_frame"][0].replace("\\", "/").removeprefix("mmseg_dataset/")
    result = run("predict", "--checkpoint", checkpoint, "--co2", co2, "--out", tmp_path / "one")
    assert result.exit_code == 0, result.output
    assert "pH" in result.output and "CO2: plume" in result.output
    files = sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*") if p.is_file())
    stem = co2.stem.replace("_co2", "")
    assert files == [f"json/{stem}.json", f"overlays/{stem}_co2.png", "predictions.csv"]

    result = run("predict", "-k", checkpoint, "--input", dataset / "paired_val_annotations.csv", "--out", tmp_path / "many",
                 "--backend", "onnxruntime", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "many" / "predictions.csv")) == len(table)


def test_predict_needs_one_kind_of_input(checkpoint: Path, tmp_path: Path) -> None:
    from fume.errors import ConfigError

    result = run("predict", "--checkpoint", checkpoint, "--co2", tmp_path / "a.png", "--input", tmp_path)
    assert isinstance(result.exception, ConfigError)
    assert "got --co2/--ch4 and --input" in str(result.exception)


def test_export_and_predict_with_the_onnx_file(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "fume.onnx"
    result = run("export", "--checkpoint", checkpoint, "--out", out, "--opset", "17")
    assert result.exit_code == 0, result.output
    assert "parity with PyTorch: max |diff|" in result.output
    assert out.is_file() and out.with_suffix(".json").is_file()
    result = run("predict", "--onnx", out, "--input", dataset / "paired_test_annotations.csv", "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output


def test_int8_export_prints_what_int8_kept(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "fume.onnx"
    result = run("export", "-k", checkpoint, "--out", out, "--quantize", "int8",
                 "--calibration", dataset / "paired_train_annotations.csv", "--calibration-pairs", "4")
    assert result.exit_code == 0, result.output
    int8 = json.loads(out.with_suffix(".json").read_text())["int8"]["int8"]
    n = int8["num_pairs"]
    kept = round(int8["same_class_as_fp32"] * n)
    pixels = 100 * int8["same_pixel_as_fp32"]
    assert f"same as fp32: the class of {kept} of {n} pairs, the label of {pixels:.2f} % of the pixels" in " ".join(result.output.split())


def test_generate_sequence_then_video_mode(checkpoint: Path, tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    result = run("generate", seq, "--sequence", "--frames", "4", "--fps", "8", "--ph", "6.5,5.0", "--size", "96x64")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(seq / "sequence.csv")
    assert list(table["ph_value"]) == [6.5, 6.5, 5.0, 5.0]
    assert (seq / "co2.mp4").is_file() and (seq / "ch4.mp4").is_file()
    result = run("predict", "-k", checkpoint, "--co2-video", seq / "co2.mp4", "--ch4-video", seq / "ch4.mp4", "--out", tmp_path / "video")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "video" / "video_predictions.csv")) == 4
    assert (tmp_path / "video" / "annotated.mp4").stat().st_size > 0


def test_benchmark_json_has_every_field(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    result = run("benchmark", "--size", "64x64", "--batch", "2", "--backend", "torch,onnxruntime,onnxruntime-int8",
                 "--runs", "2", "--warmup", "1", "--threads", "1", "--compare", "fastscnn", "--json", path)
    assert result.exit_code == 0, result.output
    report = json.loads(path.read_text())
    assert report["size"] == "64x64"
    assert report["model"]["params"] > 1_000_000 and report["model"]["gmacs"] > 0
    for key in ("cpu", "cpu_count", "torch", "onnxruntime", "load_average"):
        assert key in report["machine"]
    got = [(r["backend"], r["batch"]) for r in report["results"]]
    assert got == [("torch", 2), ("onnxruntime", 2), ("onnxruntime-int8", 2)]
    for r in report["results"]:
        assert set(RESULT_FIELDS) <= set(r)
        assert r["threads"] == 1 and r["runs"] == 2 and r["p90_ms"] >= r["p50_ms"] > 0
        assert r["pairs_per_s"] == pytest.approx(r["batch"] * 1000 / r["p50_ms"])
        assert r["peak_memory_mb"] > 10
        ref = r["reference"]
        assert ref["model"] == "fastscnn" and ref["passes_per_pair"] == 2
        assert r["speed_ratio"] == pytest.approx(ref["p50_ms"] / r["p50_ms"])
    assert "ratio = FUME pairs/s / fastscnn pairs/s" in result.output


def test_benchmark_refuses_torch_on_an_onnx_file(onnx_export) -> None:
    from fume.errors import ConfigError

    result = run("benchmark", "--onnx", onnx_export.onnx_path, "--backend", "torch")
    assert isinstance(result.exception, ConfigError)
    assert "with --onnx only the onnxruntime backends can run" in str(result.exception)
    result = run("benchmark", "--onnx", onnx_export.onnx_path, "--backend", "onnxruntime", "--size", "640x480")
    assert "was exported for 128x96 frames, not 640x480" in str(result.exception)


def test_errors_are_printed_without_traceback(tmp_path: Path) -> None:
    """Through the real console script: exit 1 and one clear line."""
    missing = tmp_path / "missing.onnx"
    proc = subprocess.run([sys.executable, "-c", "from fume.cli import main; main()", "predict", "--onnx", str(missing), "--co2", "a.png"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"ONNX file not found: {missing}" in proc.stderr.replace("\n", "")
    assert "Traceback" not in proc.stderr
