"""fume evaluate: metrics.json agrees with sklearn (from predictions.csv) and numpy (from the saved masks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, confusion_matrix, f1_score
from typer.testing import CliRunner

from fume.cli import app
from fume.config import load_config, resolve_paths
from fume.data.generate import generate_dataset
from fume.data.pairing import pair_dataset
from fume.data.split import split_dataset
from fume.errors import ConfigError
from fume.evaluation.metrics import METRIC_KEYS
from fume.workflows.evaluate import evaluate_checkpoint

CONFIG = "fume_fastscnn"  # the shipped config, by name
NATIVE = (128, 96)  # frames on disk; the model sees 64x64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A FUME model trained for two epochs on tiny generated data."""
    from fume.workflows.train import train

    root = tmp_path_factory.mktemp("eval") / "data"
    generate_dataset(root, n_originals=18, augmentations=1, size=NATIVE, class_mix=(0.4, 0.2, 0.4), seed=1)
    split_dataset(root, seed=0)
    pair_dataset(root, seed=0)
    overrides = [f"data.dataset_root={root}", "data.image_size=[64,64]", "data.num_workers=0", "training.batch_size=4",
                 "training.num_epochs=2", "training.optimizer.lr=0.005", "logging.progress_bar=false",
                 "logging.metrics_table=false", "logging.tensorboard=false", "logging.log_every_n_steps=1",
                 "testing.batch_size=5"]
    result = train(resolve_paths(load_config(CONFIG, overrides)), run_dir=root.parent / "run")
    return result.best_checkpoint


@pytest.fixture(scope="module")
def evaluated(checkpoint: Path):
    """The CLI run once with --save-masks: (output folder, its metrics.json)."""
    out = checkpoint.parent.parent / "eval"
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--split", "test", "--out", str(out), "--save-masks"])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "metrics.json").read_text())


def test_writes_every_output(evaluated):
    out, metrics = evaluated
    assert set(METRIC_KEYS) <= set(metrics)
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(predictions.columns) == [
        "sample_id", "co2_frame", "co2_mask", "ch4_frame", "ch4_mask", "class_id", "pred_class_id",
        "prob_healthy", "prob_transitional", "prob_acidotic", "co2_pred_mask", "ch4_pred_mask",
    ]
    assert metrics["num_samples"] == len(predictions) > 0
    probs = predictions[["prob_healthy", "prob_transitional", "prob_acidotic"]].to_numpy(float)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == predictions["pred_class_id"].to_numpy()).all()
    for name in ("confusion_matrix.png", "qualitative.png"):
        assert (out / name).stat().st_size > 0


def test_classification_metrics_equal_sklearn(evaluated):
    out, metrics = evaluated
    p = pd.read_csv(out / "predictions.csv")
    y, yhat = p["class_id"].to_numpy(), p["pred_class_id"].to_numpy()
    assert metrics["confusion_matrix"] == confusion_matrix(y, yhat, labels=[0, 1, 2]).tolist()
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, yhat))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y, yhat, average="macro"))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y, yhat, average="weighted"))
    kappa = cohen_kappa_score(y, yhat)
    assert (metrics["cohens_kappa"] is None and np.isnan(kappa)) or metrics["cohens_kappa"] == pytest.approx(kappa)
    assert metrics["accuracy"] == pytest.approx((y == yhat).mean())


def test_segmentation_metrics_equal_numpy_on_the_saved_masks(evaluated, checkpoint):
    out, metrics = evaluated
    root = Path(load_config(checkpoint.parent.parent / "config.yaml").data.dataset_root)
    p = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    confusion = {gas: np.zeros((3, 3), np.int64) for gas in ("co2", "ch4")}
    for _, row in p.iterrows():
        for gas in ("co2", "ch4"):
            if not row[f"{gas}_frame"]:
                assert row[f"{gas}_pred_mask"] == ""
                continue
            pred = np.asarray(Image.open(out / row[f"{gas}_pred_mask"]))
            true = np.asarray(Image.open(root / row[f"{gas}_mask"]))
            assert pred.shape == true.shape == (NATIVE[1], NATIVE[0])  # native resolution, not 64x64
            assert set(np.unique(pred)) <= {0, 1, 2}
            confusion[gas] += np.bincount(true.ravel() * 3 + pred.ravel(), minlength=9).reshape(3, 3)

    def iou(cm):
        tp = np.diag(cm).astype(float)
        union = cm.sum(0) + cm.sum(1) - tp
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    both = iou(confusion["co2"] + confusion["ch4"])
    for name, value in zip(("iou_background", "iou_tube", "iou_gas"), both):
        assert metrics[name] == pytest.approx(value)
    assert metrics["miou"] == pytest.approx(np.nanmean(both))
    assert metrics["co2_miou"] == pytest.approx(np.nanmean(iou(confusion["co2"])))
    assert metrics["ch4_miou"] == pytest.approx(np.nanmean(iou(confusion["ch4"])))
    cm = confusion["co2"] + confusion["ch4"]
    assert metrics["pixel_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert metrics["joint_score"] == pytest.approx(0.5 * metrics["miou"] + 0.5 * metrics["balanced_accuracy"])


def test_another_models_config_is_a_clear_error(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match=r"was trained with another model than the config asks for \(model.fusion: checkpoint 'self_channel' vs config 'concat'\)"):
        evaluate_checkpoint(checkpoint, out=tmp_path, overrides=["model.fusion=concat"])
    other = tmp_path / "other.yaml"
    other.write_text("model:\n  name: segmentation_only\n")
    with pytest.raises(ConfigError, match=r"model.name: checkpoint 'fume' vs config 'segmentation_only'"):
        evaluate_checkpoint(checkpoint, out=tmp_path, config_path=other)


def test_data_overrides_are_applied(checkpoint, tmp_path):
    with pytest.raises(Exception, match=r"paired table for split 'test' not found: .*nowhere"):
        evaluate_checkpoint(checkpoint, out=tmp_path, overrides=[f"data.dataset_root={tmp_path / 'nowhere'}"])
