"""The bundled demo model (fume/assets/demo.onnx, made by scripts/train_demo_model.py): what its
metadata promises, that it is a trained model, and `fume predict --model demo` without PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fume.errors import FumeError
from fume.inference.demo import DEMO_NOTICE, demo_card, demo_model_path, is_demo_name
from fume.inference.predictor import Predictor


def test_the_card_says_synthetic_and_agrees_with_the_file() -> None:
    path = demo_model_path()
    card = demo_card(path)
    predictor = Predictor.from_onnx(path, threads=1)
    assert path.stat().st_size < 10e6  # "a few MB"
    assert "synthetic" in card["trained_on"] and card["notice"] == DEMO_NOTICE
    assert card["made_by"].startswith("python scripts/train_demo_model.py")
    assert tuple(card["input_size"]) == predictor.image_size
    assert card["temperature"] == pytest.approx(predictor.temperature) and predictor.temperature != 1.0  # calibrated on val
    test = card["test"]
    assert test["num_samples"] > 50
    for key in ("miou", "balanced_accuracy", "macro_f1", "ece", "ece_uncalibrated"):
        assert 0.0 <= test[key] <= 1.0, key
    assert test["balanced_accuracy"] > 1 / 3  # better than chance on its own test split


def test_the_demo_model_segments_fresh_synthetic_frames(tmp_path: Path) -> None:
    """Frames it never saw (another generator seed, the realistic default it was trained on): the
    gas class's IoU against the true masks is far above an untrained network's."""
    from fume.data.frames import load_frame
    from fume.data.generate import generate_dataset
    from fume.data.layout import read_annotations

    generate_dataset(tmp_path, n_originals=8, augmentations=0, size=(320, 240), seed=1234, class_mix=(1, 1, 1))
    table = read_annotations(tmp_path)  # paths as the real layout writes them, normalised
    predictor = Predictor.from_onnx(demo_model_path(), threads=1)
    ious = []
    for row in table.itertuples():
        frame = {gas: None for gas in ("co2", "ch4")}
        frame[row.gas_type] = tmp_path / row.frame_path
        mask = predictor.predict(**frame).gases[row.gas_type].mask
        truth = load_frame(tmp_path / row.mask_path) == 2
        ious.append(np.logical_and(mask == 2, truth).sum() / np.logical_or(mask == 2, truth).sum())
    assert np.mean(ious) > 0.6, ious


def test_predict_model_demo_runs_without_torch_and_says_it_is_synthetic(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for gas in ("co2", "ch4"):
        Image.fromarray(rng.integers(0, 255, (120, 160), dtype=np.uint8)).save(tmp_path / f"{gas}.png")
    script = (
        "import sys\n"
        "class Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'lightning', 'torchmetrics', 'albumentations'):\n"
        "            raise ImportError(name + ' blocked by the test')\n"
        "sys.meta_path.insert(0, Blocker())\n"
        "from fume.cli import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "predict", "--model", "demo", "--co2", "co2.png", "--ch4", "ch4.png", "--out", "out", "--threads", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "synthetic data only" in " ".join(done.stderr.split())
    row = pd.read_csv(tmp_path / "out" / "predictions.csv").iloc[0]
    expected = Predictor.from_onnx(demo_model_path(), threads=1).predict(tmp_path / "co2.png", tmp_path / "ch4.png")
    assert row["pred_class_name"] == expected.class_name
    assert json.loads((tmp_path / "out" / "json" / f"{row['sample_id']}.json").read_text())["class_name"] == expected.class_name


def test_a_folder_named_demo_is_taken_for_what_it_is(tmp_path: Path, monkeypatch) -> None:
    """`--model demo` is the bundled file unless a file or folder named demo is there: then that is
    the model asked for (here an empty folder, refused naming what is missing)."""
    from fume.cli.inference_commands import _predictor

    monkeypatch.chdir(tmp_path)
    assert is_demo_name(Path("demo")) and not is_demo_name(Path("other")) and not is_demo_name(None)
    (tmp_path / "demo").mkdir()
    assert not is_demo_name(Path("demo"))
    with pytest.raises(FumeError, match="model.safetensors"):
        _predictor(None, None, None, 1, Path("demo"))
