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
        "sample_id", "co2_frame", "co2_mask", "ch4_frame", "ch4_mask", "ph_value", "class_id", "co2_recording", "ch4_recording",
        "pred_class_id", "prob_healthy", "prob_transitional", "prob_acidotic",
        "co2_true_area_px", "co2_pred_area_px", "ch4_true_area_px", "ch4_pred_area_px", "co2_pred_mask", "ch4_pred_mask",
    ]
    assert metrics["num_samples"] == len(predictions) > 0
    probs = predictions[["prob_healthy", "prob_transitional", "prob_acidotic"]].to_numpy(float)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == predictions["pred_class_id"].to_numpy()).all()
    for name in ("confusion_matrix.png", "qualitative.png", "reliability.png", "reliability.pdf", "per_ph.csv", "recordings.csv"):
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
    seen = {"co2": set(), "ch4": set()}
    for _, row in p.iterrows():
        for gas in ("co2", "ch4"):
            if not row[f"{gas}_frame"]:
                assert row[f"{gas}_pred_mask"] == ""
                continue
            pred = np.asarray(Image.open(out / row[f"{gas}_pred_mask"]))
            true = np.asarray(Image.open(root / row[f"{gas}_mask"]))
            assert pred.shape == true.shape == (NATIVE[1], NATIVE[0])  # native resolution, not 64x64
            assert set(np.unique(pred)) <= {0, 1, 2}
            assert row[f"{gas}_true_area_px"] == (true == 2).sum() and row[f"{gas}_pred_area_px"] == (pred == 2).sum()
            if row[f"{gas}_frame"] in seen[gas]:  # a reused frame counts once, from its first pair
                continue
            seen[gas].add(row[f"{gas}_frame"])
            confusion[gas] += np.bincount(true.ravel() * 3 + pred.ravel(), minlength=9).reshape(3, 3)
    assert (metrics["num_frames_co2"], metrics["num_frames_ch4"]) == (len(seen["co2"]), len(seen["ch4"]))

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


def test_calibration_ordinal_per_ph_and_recording_results(evaluated, checkpoint):
    out, metrics = evaluated
    p = pd.read_csv(out / "predictions.csv", keep_default_na=False, na_values=[""], dtype={"co2_recording": str, "ch4_recording": str})
    probs, y = p[["prob_healthy", "prob_transitional", "prob_acidotic"]].to_numpy(float), p["class_id"].to_numpy()
    # Brier and ECE by hand from the written probabilities.
    assert metrics["brier"] == pytest.approx(np.mean(((probs - np.eye(3)[y]) ** 2).sum(1)))
    top, hit = probs.max(1), probs.argmax(1) == y
    bins = np.minimum((top * 15).astype(int), 14)
    ece = sum(abs(hit[bins == b].mean() - top[bins == b].mean()) * (bins == b).mean() for b in np.unique(bins))
    assert metrics["ece"] == pytest.approx(ece)
    yhat = p["pred_class_id"].to_numpy()
    assert metrics["off_by_two_rate"] == pytest.approx(np.mean(((y == 0) & (yhat == 2)) | ((y == 2) & (yhat == 0))))
    # The recordings named are those of the dataset's annotations.
    annotations = pd.read_csv(Path(load_config(checkpoint.parent.parent / "config.yaml").data.dataset_root) / "annotations.csv",
                              dtype={"original_sample_id": str})
    from fume.data.layout import normalise_path

    lookup = dict(zip(annotations["frame_path"].map(normalise_path), annotations["original_sample_id"]))
    for gas in ("co2", "ch4"):
        present = p[f"{gas}_frame"].notna()
        assert (p.loc[present, f"{gas}_frame"].map(lookup) == p.loc[present, f"{gas}_recording"]).all()
    # recordings.csv: mean probability over the pairs using each recording, recomputed with pandas.
    rec = pd.read_csv(out / "recordings.csv", dtype={"recording": str})
    long = pd.concat([p[[f"{g}_recording", "class_id", "prob_healthy", "prob_transitional", "prob_acidotic"]]
                      .rename(columns={f"{g}_recording": "recording"}).dropna(subset=["recording"]) for g in ("co2", "ch4")])
    expected = long.groupby("recording")[["prob_healthy", "prob_transitional", "prob_acidotic"]].mean()
    np.testing.assert_allclose(rec.set_index("recording").loc[expected.index, expected.columns].to_numpy(), expected.to_numpy())
    assert metrics["recording_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(rec["class_id"], rec["pred_class_id"]))
    # per_ph.csv: pairs and accuracy per pH and gas.
    per_ph = pd.read_csv(out / "per_ph.csv")
    for gas in ("co2", "ch4"):
        part = p[p[f"{gas}_frame"].notna()]
        for ph, group in part.groupby("ph_value"):
            row = per_ph[(per_ph["gas"] == gas) & np.isclose(per_ph["ph_value"], ph)].iloc[0]
            assert row["pairs"] == len(group)
            assert row["accuracy"] == pytest.approx((group["pred_class_id"] == group["class_id"]).mean())
            frames = group.drop_duplicates(f"{gas}_frame")
            assert row["true_mean_area_px"] == pytest.approx(frames[f"{gas}_true_area_px"].mean())


def test_calibrate_fits_a_temperature_on_val_and_stores_it(checkpoint, tmp_path):
    import shutil

    from fume.evaluation.calibration import fit_temperature
    from fume.models.checkpoint import config_from_checkpoint, read_checkpoint

    copy = tmp_path / "model.ckpt"
    shutil.copy(checkpoint, copy)
    (tmp_path / "val").mkdir()
    val = evaluate_checkpoint(copy, split="val", out=tmp_path / "val", progress=False)  # at temperature 1
    p = pd.read_csv(val.predictions_csv)
    expected = fit_temperature(p[["prob_healthy", "prob_transitional", "prob_acidotic"]].to_numpy(), p["class_id"].to_numpy())
    result = evaluate_checkpoint(copy, split="test", out=tmp_path / "test", progress=False, calibrate=True)
    stored = config_from_checkpoint(read_checkpoint(copy)).testing.temperature
    assert stored == pytest.approx(expected, rel=1e-4) and result.metrics["temperature"] == pytest.approx(stored)
    assert result.metrics["ece_uncalibrated"] is not None
    # fume predict's path (the Predictor) applies the stored temperature.
    from fume.inference.predictor import Predictor

    assert Predictor.from_checkpoint(copy).temperature == pytest.approx(stored)
    # ... and so does an ONNX file exported from it (the stored config is its metadata).
    from fume.inference.onnx import export_fp32
    from fume.models.checkpoint import load_model_from_checkpoint

    model, config = load_model_from_checkpoint(copy)
    export_fp32(model, config, tmp_path / "model.onnx", tuple(config.data.image_size))
    onnx = Predictor.from_onnx(tmp_path / "model.onnx")
    assert onnx.temperature == pytest.approx(stored)
    frame = np.full((NATIVE[1], NATIVE[0]), 100, np.uint8)
    scaled, plain = onnx.predict(frame, frame), Predictor.from_checkpoint(checkpoint).predict(frame, frame)
    np.testing.assert_allclose(np.log(scaled.probabilities) - np.log(scaled.probabilities).mean(),
                               (np.log(plain.probabilities) - np.log(plain.probabilities).mean()) / stored, atol=1e-3)


def test_a_frame_used_by_several_pairs_is_scored_once(checkpoint):
    from fume.data.dataset import read_paired_table
    from fume.evaluation.engine import evaluate_predictors
    from fume.inference.predictor import Predictor

    config = load_config(checkpoint.parent.parent / "config.yaml")
    table = read_paired_table(config.data.paired_table("test"))
    twice = pd.concat([table, table.assign(sample_id=table["sample_id"] + "-again")], ignore_index=True)
    predictor = Predictor.from_checkpoint(checkpoint)
    once, doubled = (evaluate_predictors({"m": predictor}, t, config.data.dataset_root)["m"].metrics for t in (table, twice))
    assert doubled["num_samples"] == 2 * once["num_samples"]
    for key in ("miou", "co2_miou", "ch4_miou", "iou_gas", "hd95_gas", "asd_gas", "num_frames_co2", "num_frames_ch4", "boundary_images"):
        assert doubled[key] == pytest.approx(once[key], nan_ok=True), key
    assert doubled["balanced_accuracy"] == pytest.approx(once["balanced_accuracy"])  # classification counts pairs
