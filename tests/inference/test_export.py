"""`fume export`: named inputs/outputs, dynamic batch, parity with PyTorch, metadata, int8 with
its reported change on the validation split, and what a failed export leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fume.errors import ConfigError, FumeError
from fume.inference import Predictor
from fume.models.checkpoint import load_model_from_checkpoint
from fume.workflows.export import export_checkpoint


def test_onnx_has_named_io_dynamic_batch_and_matches_torch(onnx_export, checkpoint: Path, dataset: Path) -> None:
    session = ort.InferenceSession(str(onnx_export.onnx_path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs == {"co2": ["batch", 1, 96, 128], "ch4": ["batch", 1, 96, 128], "modality_mask": ["batch", 2]}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert sorted(outputs) == ["ch4_seg_logits", "cls_logits", "co2_seg_logits"]
    assert all(shape[0] == "batch" for shape in outputs.values())

    # Our own parity check at another batch size, on real frames, one pair missing its CH4 frame.
    from fume.data.dataset import PairedDataset

    items = [PairedDataset(dataset / "paired_test_annotations.csv", dataset, image_size=(128, 96))[i] for i in range(3)]
    co2 = torch.stack([it["co2_frame"] for it in items])
    ch4 = torch.stack([it["ch4_frame"] for it in items])
    mask = torch.stack([it["modality_mask"] for it in items])
    mask[2, 1] = 0.0
    model, _ = load_model_from_checkpoint(checkpoint)
    with torch.no_grad():
        expected = model(co2, ch4, mask)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"co2": co2.numpy(), "ch4": ch4.numpy(), "modality_mask": mask.numpy()})))
    assert got["co2_seg_logits"].shape == (3, 3, 96, 128) and got["cls_logits"].shape == (3, 3)
    for name, value in expected.items():
        assert np.abs(got[name] - value.numpy()).max() <= 1e-4
        assert (got[name].argmax(1) == value.numpy().argmax(1)).mean() >= 0.999

    report = json.loads(onnx_export.report_path.read_text())
    assert report["inputs"] == ["co2", "ch4", "modality_mask"]
    assert report["image_size"] == [128, 96]
    # The untrained test model's logits stay below ~5, where the allowance is about the 1e-4.
    assert max(report["parity"]["max_abs_diff"].values()) <= 1e-4
    assert max(report["parity"]["tolerance_used"].values()) <= 1.0
    assert min(report["parity"]["argmax_agreement"].values()) >= 0.999


def test_onnx_file_carries_labels_and_size(onnx_export, checkpoint: Path, dataset: Path) -> None:
    from fume.inference.batch import pairs_from_csv

    predictor = Predictor.from_onnx(onnx_export.onnx_path)
    _, config = load_model_from_checkpoint(checkpoint)
    assert predictor.image_size == (128, 96)
    assert predictor.label_config == config.data.labels
    pair = pairs_from_csv(dataset / "paired_val_annotations.csv")[0]
    a = predictor.predict(pair.co2, pair.ch4)
    b = Predictor.from_checkpoint(checkpoint).predict(pair.co2, pair.ch4)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)


def test_failed_parity_check_writes_nothing(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fume.inference.onnx as export

    monkeypatch.setattr(export, "PARITY_MAX_ABS_DIFF", 1e-12)  # no float32 export can pass this
    out = tmp_path / "model.onnx"
    with pytest.raises(FumeError, match=r"ONNX export does not match PyTorch, nothing written: max \|torch - onnxruntime\| of the logits: cls_logits"):
        export_checkpoint(checkpoint, out)
    assert list(tmp_path.iterdir()) == []


def test_int8_export_reports_its_change(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    from fume.workflows.evaluate import evaluate_checkpoint

    out = tmp_path / "model.onnx"
    result = export_checkpoint(checkpoint, out, quantize="int8", calibration=dataset / "paired_train_annotations.csv", calibration_pairs=4)
    assert result.int8_path == tmp_path / "model.int8.onnx" and result.int8_path.is_file()
    q = result.int8
    assert q["calibration_pairs"] == 4
    for key in ("miou", "balanced_accuracy"):
        assert q["delta"][key] == pytest.approx(q["int8"][key] - q["fp32"][key])
    # The fp32 figures are those `fume evaluate` finds on the same split (native-resolution mIoU).
    reference = evaluate_checkpoint(checkpoint, split="val", out=tmp_path / "eval", progress=False).metrics
    assert q["fp32"]["miou"] == pytest.approx(reference["miou"], abs=1e-3)
    assert q["fp32"]["balanced_accuracy"] == pytest.approx(reference["balanced_accuracy"])
    assert q["fp32"]["num_pairs"] == reference["num_samples"]
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["int8"]["delta"] == pytest.approx(q["delta"])
    # The int8 file is a working FUME model with the same metadata.
    predictor = Predictor.from_onnx(result.int8_path)
    assert predictor.image_size == (128, 96)
    pred = predictor.predict(co2=np.zeros((75, 100), np.uint8))
    assert pred.probabilities.shape == (3,)


def test_int8_needs_calibration_data(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--quantize int8 needs --calibration PAIRED_CSV"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", quantize="int8")
    with pytest.raises(ConfigError, match="--quantize 'fp16' is not supported"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", quantize="fp16")
    with pytest.raises(FumeError, match="paired table not found: .*nowhere.csv"):
        export_checkpoint(checkpoint, tmp_path / "m.onnx", quantize="int8", calibration=tmp_path / "nowhere.csv")
    assert list(tmp_path.iterdir()) == []
