"""The predictor API and batch mode: agreement with `fume evaluate`, resizing back to the native
size, single-gas pairs, the JSON, and the failure cases."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from inference_helpers import FRAME_SIZE, MODEL_SIZE, make_checkpoint

from fume.data.frames import load_frame, load_mask
from fume.errors import ConfigError, DataError, FumeError
from fume.inference import Predictor
from fume.inference.batch import pairs_from_csv, pairs_from_folder, predict_pairs
from fume.models.checkpoint import load_model_from_checkpoint


@pytest.fixture(scope="module")
def evaluation(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    from fume.workflows.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, split="val", out=tmp_path_factory.mktemp("eval"), save_masks=True, progress=False)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_predict_agrees_with_evaluate(backend: str, checkpoint: Path, dataset: Path, evaluation, tmp_path: Path) -> None:
    expected = pd.read_csv(evaluation.predictions_csv)
    predictor = Predictor.from_checkpoint(checkpoint, backend=backend)
    pairs = pairs_from_csv(dataset / "paired_val_annotations.csv")
    result = predict_pairs(predictor, pairs, tmp_path, save_masks=True, batch_size=2)
    got = pd.read_csv(result.predictions_csv)

    assert list(got["sample_id"]) == list(expected["sample_id"])
    assert list(got["pred_class_id"]) == list(expected["pred_class_id"])
    assert list(got["class_id"]) == list(expected["class_id"])
    probs = ["prob_healthy", "prob_transitional", "prob_acidotic"]
    np.testing.assert_allclose(got[probs].to_numpy(), expected[probs].to_numpy(), atol=1e-4)
    # Masks at native resolution: the same labels as evaluate's (BN folding and ONNX Runtime may
    # round differently, which can flip a pixel sitting on an exact tie).
    same = total = 0
    for _, (ours, theirs) in enumerate(zip(got.itertuples(), expected.itertuples())):
        for gas in ("co2", "ch4"):
            a = load_mask(tmp_path / getattr(ours, f"{gas}_mask"))
            b = load_mask(evaluation.out_dir / getattr(theirs, f"{gas}_pred_mask"))
            assert a.shape == b.shape == FRAME_SIZE[::-1]
            same += int((a == b).sum())
            total += a.size
    assert same / total >= 0.999


def test_json_and_csv_describe_the_masks(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint)
    pairs = pairs_from_csv(dataset / "paired_val_annotations.csv")[:2]
    result = predict_pairs(predictor, pairs, tmp_path, save_masks=True)
    table = pd.read_csv(result.predictions_csv)
    for row in table.itertuples():
        data = json.loads((tmp_path / row.json).read_text())
        assert data["sample_id"] == row.sample_id
        probs = np.array(list(data["probabilities"].values()))
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert data["class_id"] == int(probs.argmax()) == row.pred_class_id
        levels = {0: [6.5, 6.2], 1: [5.9], 2: [5.6, 5.3, 5.0]}[data["class_id"]]
        assert data["ph_range"] == {"min": min(levels), "max": max(levels), "levels": levels}
        for gas in ("co2", "ch4"):
            mask = load_mask(tmp_path / getattr(row, f"{gas}_mask"))
            summary = data["gases"][gas]
            h, w = mask.shape
            assert (summary["width"], summary["height"]) == FRAME_SIZE
            assert summary["plume_area_px"] == int((mask == 2).sum()) == getattr(row, f"{gas}_plume_area_px")
            assert summary["plume_area_percent"] == pytest.approx(100 * (mask == 2).sum() / (h * w), abs=1e-4)
            assert summary["tube_area_px"] == int((mask == 1).sum())
            assert summary["tube_found"] == (summary["tube_area_px"] >= max(1, 5e-4 * h * w))
            overlay = cv2.imread(str(tmp_path / getattr(row, f"{gas}_overlay")))
            assert overlay.shape == (h, w, 3)


def test_single_gas_pair_matches_the_model_run_by_hand(checkpoint: Path, dataset: Path) -> None:
    """Independent reference: resize with OpenCV's area filter, run the network with mask [1, 0]."""
    row = pd.read_csv(dataset / "paired_val_annotations.csv").iloc[0]
    path = dataset / row["co2_frame"].replace("\\", "/").removeprefix("mmseg_dataset/")
    result = Predictor.from_checkpoint(checkpoint).predict(co2=path)

    model, _ = load_model_from_checkpoint(checkpoint)
    frame = cv2.resize(load_frame(path), MODEL_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    co2 = torch.from_numpy(frame)[None, None]
    with torch.no_grad():
        out = model(co2, torch.zeros_like(co2), torch.tensor([[1.0, 0.0]]))
    np.testing.assert_allclose(result.probabilities, out["cls_logits"].softmax(1)[0].numpy(), atol=1e-5)
    assert result.modality_mask == [1.0, 0.0]
    assert not result.gases["ch4"].present and result.gases["ch4"].mask is None
    assert result.to_dict()["gases"]["ch4"] == {"present": False}
    # Mask back at the frame's 100x75: bilinear on the logits, then argmax.
    logits = torch.nn.functional.interpolate(out["co2_seg_logits"], size=FRAME_SIZE[::-1], mode="bilinear", align_corners=False)
    agree = (result.gases["co2"].mask == logits.argmax(1)[0].numpy()).mean()
    assert agree >= 0.999


def test_arrays_and_batches_give_the_same_result(checkpoint: Path, dataset: Path) -> None:
    pairs = pairs_from_csv(dataset / "paired_val_annotations.csv")[:3]
    predictor = Predictor.from_checkpoint(checkpoint)
    one_by_one = [predictor.predict(p.co2, p.ch4) for p in pairs]
    batch = predictor.predict_batch([(load_frame(p.co2), load_frame(p.ch4), None) for p in pairs])
    for a, b in zip(one_by_one, batch):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        assert (a.gases["co2"].mask == b.gases["co2"].mask).mean() >= 0.999


def test_folder_of_pairs(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    rows = pd.read_csv(dataset / "paired_val_annotations.csv").head(2)
    folder = tmp_path / "in"
    for i, row in rows.iterrows():
        for gas in ("co2", "ch4"):
            src = dataset / row[f"{gas}_frame"].replace("\\", "/").removeprefix("mmseg_dataset/")
            (folder / gas).mkdir(parents=True, exist_ok=True)
            (folder / gas / f"sample{i}.png").write_bytes(src.read_bytes())
    (folder / "extra_co2.png").write_bytes((folder / "co2" / "sample0.png").read_bytes())  # no CH4 partner
    pairs = pairs_from_folder(folder)
    assert [(p.sample_id, p.co2 is not None, p.ch4 is not None) for p in pairs] == [
        ("extra", True, False), ("sample0", True, True), ("sample1", True, True)
    ]
    result = predict_pairs(Predictor.from_checkpoint(checkpoint), pairs, tmp_path / "out", overlays=False)
    assert len(result.predictions) == 3
    assert not (tmp_path / "out" / "overlays").exists()
    extra = json.loads((tmp_path / "out" / "json" / "extra.json").read_text())
    assert extra["modality_mask"] == [1.0, 0.0]


def test_folder_with_frames_of_unknown_gas(tmp_path: Path) -> None:
    (tmp_path / "frame.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    with pytest.raises(DataError, match=r"cannot tell whether .*frame.png is a CO2 or a CH4 frame"):
        pairs_from_folder(tmp_path)


# ---------------------------------------------------------------- failure behaviour


def test_unreadable_frame_names_the_file(checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken_co2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=f"cannot read frame {bad}"):
        Predictor.from_checkpoint(checkpoint).predict(co2=bad)
    with pytest.raises(DataError, match="frame file not found: .*missing.png"):
        Predictor.from_checkpoint(checkpoint).predict(ch4=tmp_path / "missing.png")


def test_frames_of_different_sizes(checkpoint: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a_co2.png", tmp_path / "a_ch4.png"
    cv2.imwrite(str(a), np.zeros((75, 100), np.uint8))
    cv2.imwrite(str(b), np.zeros((48, 64), np.uint8))
    expected = f"CO2 frame {a} is 100x75 but CH4 frame {b} is 64x48; the two frames of a pair must have the same size"
    with pytest.raises(DataError, match=expected.replace("(", r"\(")):
        Predictor.from_checkpoint(checkpoint).predict(co2=a, ch4=b)


def test_pair_without_frames(checkpoint: Path) -> None:
    with pytest.raises(DataError, match="neither a CO2 nor a CH4 frame"):
        Predictor.from_checkpoint(checkpoint).predict()


def test_checkpoint_of_an_unknown_model(dataset: Path, tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "ok.ckpt", dataset)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["config"]["model"]["name"] = "fume_v9"
    torch.save(ckpt, tmp_path / "unknown.ckpt")
    with pytest.raises(ConfigError, match="unknown model 'fume_v9'; available models: fume"):
        Predictor.from_checkpoint(tmp_path / "unknown.ckpt")
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        Predictor.from_checkpoint(path, backend="tensorrt")


def test_onnx_with_other_inputs_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["cls_logits"])], "other",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 96, 128])],
        [helper.make_tensor_value_info("cls_logits", TensorProto.FLOAT, ["batch", 3, 96, 128])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(FumeError, match=rf"ONNX model {path} has inputs \['image'\]; a FUME model needs inputs co2 \(B, 1, H, W\)"):
        Predictor.from_onnx(path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    with pytest.raises(FumeError, match=f"cannot load ONNX model {garbage}"):
        Predictor.from_onnx(garbage)


def test_failed_batch_leaves_no_outputs(checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    pairs = pairs_from_csv(dataset / "paired_val_annotations.csv")[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    pairs[2].co2 = broken
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # something the user keeps there
    with pytest.raises(DataError, match=str(broken)):
        predict_pairs(Predictor.from_checkpoint(checkpoint), pairs, out)
    assert sorted(p.name for p in out.rglob("*")) == ["notes.txt"]


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_channel_argmax_is_numpys_argmax_ties_included(classes: int) -> None:
    from fume.inference.predictor import channel_argmax

    rng = np.random.default_rng(classes)
    logits = rng.integers(-2, 3, (classes, 37, 53)).astype(np.float32)  # few values: many ties
    labels = channel_argmax(logits)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, logits.argmax(0))
    strided = rng.standard_normal((29, 31, classes)).astype(np.float32).transpose(2, 0, 1)  # the OpenCV path's layout
    np.testing.assert_array_equal(channel_argmax(strided), strided.argmax(0))
