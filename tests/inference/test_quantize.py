"""int8 calibration: FUME's percentile ranges against numpy, its min/max against ONNX Runtime's own
calibration (the same int8 file), and the frame standardisation left in fp32."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

from fume.errors import DataError
from fume.inference.onnx import export_onnx
from fume.inference.quantize import ListReader, activation_ranges, first_convs, fp32_nodes, preprocess_for_int8, quantize_preprocessed
from fume.models import create_model, list_models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from model_helpers import make_nontrivial  # noqa: E402

SIZE = (64, 64)


def _pairs(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {"co2": rng.random((1, 1, 64, 64), dtype=np.float32), "ch4": rng.random((1, 1, 64, 64), dtype=np.float32) ** 3,
         "modality_mask": np.ones((1, 2), np.float32)}
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def fume_graph(tmp_path_factory) -> Path:
    """A FUME with random batch-norm statistics, exported and prepared as `fume export --quantize int8` does."""
    work = tmp_path_factory.mktemp("quantize")
    torch.manual_seed(0)
    export_onnx(make_nontrivial(create_model("fume")).eval(), work / "plain.onnx", SIZE, for_int8=True)
    return preprocess_for_int8(work / "plain.onnx", work)


def _two_op_graph(path: Path) -> Path:
    """y = relu(x) * 3 - 1 on (1, 1000): every tensor's values known to numpy."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "three"], ["m"], name="mul"),
        helper.make_node("Sub", ["m", "one"], ["y"], name="sub"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])],
        [helper.make_tensor("three", TensorProto.FLOAT, [], [3.0]), helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
        value_info=[helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1000]) for n in ("r", "m")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("percentile", [100.0, 99.9, 95.0])
def test_ranges_are_the_percentile_of_abs_over_all_pairs(tmp_path: Path, percentile: float) -> None:
    path = _two_op_graph(tmp_path / "g.onnx")
    rng = np.random.default_rng(1)
    xs = [rng.normal(0, 1 + i, (1, 1000)).astype(np.float32) for i in range(5)]
    ranges = activation_ranges(path, ({"x": x} for x in xs), len(xs), percentile)
    x = np.concatenate(xs)
    values = {"x": x, "r": np.maximum(x, 0), "m": np.maximum(x, 0) * 3, "y": np.maximum(x, 0) * 3 - 1}
    assert set(ranges) == set(values)
    for name, v in values.items():
        # ONNX Runtime's symmetric percentile: t = the percentile of |x| (the smallest value with at
        # least `percentile` % of the values at or below it), the range [max(min, -t), min(max, t)].
        t = np.percentile(np.abs(v), percentile, method="inverted_cdf")
        assert ranges[name] == pytest.approx((max(v.min(), -t), min(v.max(), t)), rel=1e-6), name


def test_min_max_ranges_give_onnx_runtimes_own_int8_file(fume_graph: Path, tmp_path: Path) -> None:
    """At percentile 100 the ranges are min/max: the file must be the one ONNX Runtime's MinMax
    calibration writes, scale for scale (this checks how the ranges reach the quantizer)."""
    pairs = _pairs(3)
    keep = fp32_nodes(fume_graph)
    quantize_static(
        str(fume_graph), str(tmp_path / "ort.onnx"), ListReader(pairs), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        calibrate_method=CalibrationMethod.MinMax, reduce_range=True, nodes_to_exclude=keep,
    )
    quantize_preprocessed(fume_graph, tmp_path / "own.onnx", ListReader(pairs), percentile=100.0)
    ort_file, own_file = (onnx.load(str(tmp_path / f"{name}.onnx")) for name in ("ort", "own"))
    assert [n.op_type for n in own_file.graph.node] == [n.op_type for n in ort_file.graph.node]
    expected = {i.name: onnx.numpy_helper.to_array(i) for i in ort_file.graph.initializer}
    got = {i.name: onnx.numpy_helper.to_array(i) for i in own_file.graph.initializer}
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_standardisation_and_first_convolutions_stay_fp32(fume_graph: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    quantize_preprocessed(fume_graph, out, ListReader(_pairs(2)))
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    first = first_convs(fume_graph)
    assert len(first) == 2 and all(n.op_type == "Conv" for n in model.graph.node if n.name in first)  # one per gas

    def upstream(tensors: list[str]) -> list:
        nodes, todo = {}, list(tensors)
        while todo:
            node = producer.get(todo.pop())
            if node is not None and node.name not in nodes:
                nodes[node.name] = node
                todo.extend(node.input)
        return list(nodes.values())

    # What the first convolutions read comes from the frames through fp32 operators only: the one
    # quantized tensor on the way is the modality mask's 0/1 (exact in 8 bits).
    before = upstream([n.input[0] for n in model.graph.node if n.name in first])
    assert {"Where", "Sub", "Div", "ReduceMean"} <= {n.op_type for n in before}
    for q in (n for n in before if n.op_type == "QuantizeLinear"):
        reads = {i for n in upstream([q.input[0]]) for i in n.input} | {q.input[0]}
        assert "co2" not in reads and "ch4" not in reads, f"{q.name} quantizes the frame"
    # ... and everything after them is int8.
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) > 100


def test_constant_activations_and_an_empty_table(fume_graph: Path, tmp_path: Path) -> None:
    """An untrained FUME has tensors of one value (ONNX Runtime's histogram calibration stops
    there); a calibration table with no pairs is an error that says so."""
    torch.manual_seed(0)
    export_onnx(create_model("fume").eval(), tmp_path / "untrained.onnx", SIZE, for_int8=True)
    pre = preprocess_for_int8(tmp_path / "untrained.onnx", tmp_path)
    quantize_preprocessed(pre, tmp_path / "untrained.int8.onnx", ListReader(_pairs(2)))
    assert (tmp_path / "untrained.int8.onnx").is_file()
    with pytest.raises(DataError, match="int8 calibration got no pairs"):
        quantize_preprocessed(fume_graph, tmp_path / "none.onnx", ListReader([]))


@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_models_frame_path_stays_fp32(name: str, tmp_path: Path) -> None:
    """Whatever reads the frames first (one gray channel per encoder pass, or both gases stacked in
    early_fusion) and the standardisation before it are left to fp32."""
    export_onnx(create_model(name).eval(), tmp_path / "m.onnx", SIZE, for_int8=True)
    pre = preprocess_for_int8(tmp_path / "m.onnx", tmp_path)
    model = onnx.load(str(pre))
    ops = {n.name: n.op_type for n in model.graph.node}
    first = first_convs(pre)
    assert first and all(ops[n] == "Conv" for n in first)
    assert {"Conv", "Where", "Sub", "Div", "ReduceMean"} <= {ops[n] for n in fp32_nodes(pre)}
