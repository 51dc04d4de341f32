import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_helpers import make_nontrivial, random_pair

from fume.inference.onnx import export_onnx
from fume.models import create_model, list_models


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_differences(model, session, co2, ch4, mask) -> dict[str, float]:
    with torch.no_grad():
        expected = model(co2, ch4, mask)
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, {"co2": co2.numpy(), "ch4": ch4.numpy(), "modality_mask": mask.numpy()})
    assert set(names) == set(expected)
    return {name: float(np.abs(value - expected[name].numpy()).max()) for name, value in zip(names, got)}


def test_fume_exports_at_480x640_with_dynamic_batch_and_matches_pytorch(tmp_path):
    model = make_nontrivial(create_model("fume")).eval()
    path = tmp_path / "fume.onnx"
    names = export_onnx(model, path, size=(640, 480))
    assert sorted(names) == ["ch4_seg_logits", "cls_logits", "co2_seg_logits"]
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["co2", "ch4", "modality_mask"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    session = _session(path)
    co2, ch4 = random_pair(2, 480, 640)  # exported with batch 1: batch 2 checks the dynamic axis
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    differences = _max_differences(model, session, co2, ch4, mask)
    assert max(differences.values()) <= 1e-4, differences


@pytest.mark.parametrize("name", list(list_models()))
def test_every_model_exports_and_matches_pytorch_at_a_small_size(name, tmp_path):
    model = make_nontrivial(create_model(name)).eval()
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, path, size=(96, 64))
    co2, ch4 = random_pair(3, 64, 96)
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    differences = _max_differences(model, _session(path), co2, ch4, mask)
    assert max(differences.values()) <= 1e-4, differences


def test_full_cross_attention_fusion_exports(tmp_path):
    model = make_nontrivial(create_model("fume", fusion="full_cross", encoder="separate")).eval()
    export_onnx(model, tmp_path / "full_cross.onnx", size=(96, 64))
    co2, ch4 = random_pair(2, 64, 96)
    differences = _max_differences(model, _session(tmp_path / "full_cross.onnx"), co2, ch4, torch.ones(2, 2))
    assert max(differences.values()) <= 1e-4, differences


def test_failed_export_leaves_no_file(tmp_path):
    path = tmp_path / "bad.onnx"
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(create_model("fume"), path, size=(100, 64))
    assert list(tmp_path.iterdir()) == []
