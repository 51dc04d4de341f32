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


def _gate_products_outside_blocked_layout(path, tmp_path) -> int:
    """Mul nodes of ONNX Runtime's optimised graph fed by a conversion out of its blocked (NCHWc) layout."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / f"optimised-{path.stem}.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return sum(1 for n in graph.node if n.op_type == "Mul" and any(producer.get(i) == "ReorderOutput" for i in n.input))


def test_gates_stay_in_onnx_runtime_blocked_layout_and_int8_graph_computes_the_same(tmp_path):
    model = make_nontrivial(create_model("fume")).eval()
    fast, plain = tmp_path / "fume.onnx", tmp_path / "plain.onnx"
    export_onnx(model, fast, size=(96, 64))
    export_onnx(model, plain, size=(96, 64), for_int8=True)
    # 12 squeeze-excitation gates and 2 fusion gates: all multiplied in the blocked layout but the
    # fusion's channel attention at H/32 (its input is a concatenation ONNX Runtime keeps in NCHW).
    assert _gate_products_outside_blocked_layout(fast, tmp_path) <= 1
    assert _gate_products_outside_blocked_layout(plain, tmp_path) >= 14
    co2, ch4 = random_pair(2, 64, 96)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    for path in (fast, plain):
        assert max(_max_differences(model, _session(path), co2, ch4, mask).values()) < 1e-4


def test_exported_frame_standardisation_matches_float64_on_a_bright_frame(tmp_path):
    """A bright, low-contrast 8-bit frame like the realistic CO2 ones (vignetted background about
    0.8, std 0.08, a dark tube): the exported per-frame standardisation agrees with numpy's float64
    one. As one ReduceMean over the whole frame ONNX Runtime was 3.4e-3 off here (3.2e-4 on a real
    256x192 CO2 frame, which moved a trained quickstart model's exported logits by up to 1.5e-2);
    as the mean of the rows' means, 2.8e-6."""
    from fume.models.inputs import mask_frames

    class Standardise(torch.nn.Module):
        def forward(self, frames, present):
            return mask_frames(frames, present)

    h, w = 480, 640
    yy, xx = np.mgrid[0:h, 0:w]
    background = 0.9 - 0.2 * ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    frame = np.clip(background + 0.02 * np.random.default_rng(0).standard_normal((h, w)), 0, 1)
    frame[h // 2 - 8 : h // 2 + 8, int(w * 0.8) :] = 0.1
    frame = (np.round(frame * 255) / 255).astype(np.float32)[None, None]
    present = np.ones(1, np.float32)
    path = tmp_path / "standardise.onnx"
    torch.onnx.export(Standardise(), (torch.from_numpy(frame), torch.from_numpy(present)), str(path), dynamo=False, opset_version=17)
    session = _session(path)
    got = session.run(None, {i.name: v for i, v in zip(session.get_inputs(), (frame, present))})[0]
    values = frame.astype(np.float64)
    expected = (values - values.mean()) / values.std(ddof=1)
    assert np.abs(got - expected).max() < 5e-5
