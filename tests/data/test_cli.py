"""The data commands end to end, on a generated dataset and on one written by hand."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from fume.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _pipeline(root: Path) -> None:
    result = run("validate-data", root)
    assert result.exit_code == 0, result.output
    assert "OK: no defects found" in result.output
    result = run("split", root, "--ratios", "0.6", "0.2", "0.2", "--seed", "1")
    assert result.exit_code == 0, result.output
    result = run("audit-leakage", root)
    assert result.exit_code == 0 and "no leakage" in result.output
    result = run("pair", root, "--strategy", "random", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "total" in result.output and "by pH" in result.output
    for split in ("train", "val", "test"):
        assert (root / f"paired_{split}_annotations.csv").is_file()
    result = run("validate-data", root)  # paired tables are checked too
    assert result.exit_code == 0, result.output
    assert "paired_train_annotations.csv" in result.output


def test_generated_dataset_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "gen"
    result = run("generate", root, "--n-originals", "24", "--augmentations", "1", "--size", "64x48",
                 "--class-mix", "1", "1", "1", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "wrote 48 frames of 64x48" in result.output
    _pipeline(root)


def test_hand_written_dataset_pipeline(real_layout: Path) -> None:
    _pipeline(real_layout)
    result = run("split", real_layout, "--random")
    assert result.exit_code == 0
    result = run("audit-leakage", real_layout)
    assert result.exit_code == 1 and "LEAKAGE" in result.output
    result = run("pair", real_layout, "--strategy", "original_based", "--out", real_layout / "p")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(real_layout / "p" / "paired_train_annotations.csv")["is_paired"].sum() == 0


def test_defects_exit_1_with_report(real_layout: Path) -> None:
    table = pd.read_csv(real_layout / "annotations.csv")
    table.loc[0, "gas_type"] = "n2o"
    table.to_csv(real_layout / "annotations.csv", index=False)
    result = run("validate-data", real_layout)
    assert result.exit_code == 1
    assert "unknown_gas" in result.output and "row 2" in result.output


def test_user_errors_print_a_message_not_a_traceback(tmp_path: Path) -> None:
    fume = Path(sys.executable).with_name("fume")
    done = subprocess.run([str(fume), "pair", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1
    message = " ".join(done.stderr.split())  # rich wraps long lines
    assert f"error: no split tables in {tmp_path}" in message and "run `fume split" in message
    assert "Traceback" not in done.stderr + done.stdout
