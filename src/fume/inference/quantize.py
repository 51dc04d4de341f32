"""Static int8 quantization of a FUME ONNX file, calibrated on the user's own frames."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fume.config import FrameWindowConfig
from fume.data.dataset import PairedDataset
from fume.errors import DataError

DEFAULT_CALIBRATION_PAIRS = 64


def paired_dataset(
    table: str | os.PathLike, root: str | os.PathLike | None, size: tuple[int, int], label_config: Any, frame_window: FrameWindowConfig | None = None
):
    """PairedDataset over a paired CSV; paths resolved against `root` (default: the root `fume
    pair` recorded, else the CSV's folder) and the CSV's folder (resolve_table_path); frames
    windowed as the model was trained (data.frame_window; None: `auto`)."""
    from fume.data.layout import recorded_root

    table = Path(table)
    if not table.is_file():
        raise DataError(f"paired table not found: {table}")
    root = Path(root) if root is not None else (recorded_root(table.parent) or table.parent)
    return PairedDataset(table, root, image_size=size, label_config=label_config, frame_window=frame_window or FrameWindowConfig())


def pick_evenly(n_items: int, n_wanted: int) -> list[int]:
    """Up to n_wanted indices spread over the whole table (tables are often sorted by class)."""
    if n_items <= n_wanted:
        return list(range(n_items))
    return sorted({int(round(i)) for i in np.linspace(0, n_items - 1, n_wanted)})


def item_inputs(item: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        "co2": item["co2_frame"].numpy()[None],
        "ch4": item["ch4_frame"].numpy()[None],
        "modality_mask": item["modality_mask"].numpy()[None],
    }


class CalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over chosen pairs of a PairedDataset."""

    def __init__(self, dataset: Any, indices: list[int], progress: Callable[[], None] | None = None) -> None:
        self.dataset, self.indices, self.position, self.progress = dataset, indices, 0, progress

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.indices):
            return None
        item = self.dataset[self.indices[self.position]]
        self.position += 1
        if self.progress is not None:
            self.progress()
        return item_inputs(item)

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.indices)


# Activation ranges: the 99.999th percentile of |x| (ONNX Runtime's default percentile), not the
# min/max. With the frame standardisation in fp32 they keep the class of 100 and 93 of 100 validation
# pairs on two quickstart-recipe checkpoints (min/max ranges: 88 and 88) and lose 0.83 and 0.63
# points of mIoU (1.27 and 1.44), at the same speed. Ranges that minimise each tensor's squared
# error (clipping + rounding) kept fewer classes (93 and 94): README "ONNX export and int8".
ACTIVATION_PERCENTILE = 99.999


def quantize_int8(fp32_path: Path, out_path: Path, reader: Any, work_dir: Path) -> None:
    """Static QDQ quantization as `fume export --quantize int8` does it: int8 weights (per channel,
    7 bits), uint8 activations with the percentile ranges of activation_ranges over the calibration
    reader's pairs, the frame standardisation and the first convolution in fp32 (fp32_nodes)."""
    quantize_preprocessed(preprocess_for_int8(fp32_path, work_dir), out_path, reader)


def preprocess_for_int8(fp32_path: Path, work_dir: Path) -> Path:
    """The graph shape-inferred and optimised as ONNX Runtime recommends before quantization (BN
    folded into the convolutions, so the fused conv is what gets quantized)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work_dir / "preprocessed.onnx"
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
    except Exception:  # ONNX Runtime's symbolic shape inference gives up on some graphs (a Reshape of
        # a computed shape in classification_only); ONNX's own shape inference is enough there.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    return pre


def quantize_preprocessed(
    pre: Path, out_path: Path, reader: Any, *, percentile: float = ACTIVATION_PERCENTILE, per_channel: bool = True,
    quant_format: str = "QDQ", op_types: list[str] | None = None, fp32: list[str] | None = None, uint8_weights: bool = False,
) -> None:
    """ONNX Runtime's quantize_static on a preprocess_for_int8 graph with the activation ranges of
    activation_ranges(percentile) and the nodes `fp32` (default fp32_nodes) left in fp32. The other
    options are the variants benchmarks/int8_variants.py compares.

    reduce_range: weights use 7 bits. On x86 CPUs without VNNI (AVX2, most farm PCs) ONNX Runtime
    multiplies uint8 x int8 pairs and adds them in int16, which saturates with full 8-bit weights;
    on a quickstart checkpoint that flipped the class of 2 of 50 validation pairs (balanced accuracy
    -3.3 points), with 7-bit weights none (mIoU -0.45 points), at the same speed. `uint8_weights`:
    full 8-bit uint8 weights instead (ONNX Runtime's u8u8 kernels, which do not saturate)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32 = fp32_nodes(pre) if fp32 is None else fp32
    first: list[dict[str, np.ndarray]] = []

    def pairs():  # the reader's pairs, read once; the first one kept
        for feeds in iter(reader.get_next, None):
            first[:] = first or [feeds]
            yield feeds

    overrides = range_overrides(pre, activation_ranges(pre, pairs(), len(reader), percentile), fp32)
    if not first:
        raise DataError("int8 calibration got no pairs: the calibration table is empty")
    quantize_static(
        str(pre),
        str(out_path),
        ListReader(first),  # ONNX Runtime calibrates anyway; every range it would use is overridden
        quant_format=QuantFormat.QDQ if quant_format == "QDQ" else QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QUInt8 if uint8_weights else QuantType.QInt8,
        per_channel=per_channel,
        calibrate_method=CalibrationMethod.MinMax,
        reduce_range=not uint8_weights,
        nodes_to_exclude=fp32,
        extra_options={"TensorQuantOverrides": overrides},
        **({"op_types_to_quantize": op_types} if op_types else {}),
    )


def activation_ranges(
    model_path: Path, pairs: Iterable[dict[str, np.ndarray]], count: int, percentile: float = ACTIVATION_PERCENTILE
) -> dict[str, tuple[float, float]]:
    """(low, high) of every float tensor of the graph over `count` input pairs: [max(min, -t),
    min(max, t)] with t the `percentile` of |x| over all pairs (ONNX Runtime's symmetric percentile
    calibration; 100 gives min/max). Exact and pair by pair: each tensor keeps only its largest
    |x| values that can still be t, so memory does not grow with the pairs. ONNX Runtime's own
    percentile calibrater keeps every activation of every pair (20 GB for 64 pairs at 640x480), bins
    them (results that depend on how the pairs are chunked) and stops on a tensor of nearly constant
    value. `count` (the number of pairs) fixes how many values are kept."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path), load_external_data=False)
    computed = {out for node in model.graph.node for out in node.output} | {i.name for i in model.graph.input}
    typed = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    names = list(dict.fromkeys(v.name for v in typed if v.name in computed and v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT))
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor as named
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    largest: dict[str, np.ndarray] = {}
    keep: dict[str, int] = {}
    for feeds in pairs:
        for name, value in zip(names, session.run(names, feeds)):
            flat = np.abs(value.ravel())
            if name not in keep:
                total = count * flat.size  # t is the k-th largest |x| of all pairs' values
                keep[name] = max(1, total - int(np.ceil(percentile / 100 * total - 1e-9)) + 1)  # 99.9 % of 5000: 4995, not 4996
                low[name], high[name], largest[name] = np.inf, -np.inf, flat[:0]
            if flat.size == 0:
                continue
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
            if largest[name].size == keep[name]:  # full: a value not above the smallest kept one cannot be t
                flat = flat[flat > largest[name][0]]
            both = np.concatenate([largest[name], flat])
            k = min(keep[name], both.size)
            largest[name] = np.partition(both, both.size - k)[both.size - k :]
            largest[name].sort()  # [0] is the smallest, for the test above
    ranges = {}
    for name in keep:
        if largest[name].size:
            t = float(largest[name][0])
            ranges[name] = (max(low[name], -t), min(high[name], t))
    return ranges


def range_overrides(model_path: Path, ranges: dict[str, tuple[float, float]], fp32: list[str]) -> dict[str, list[dict[str, Any]]]:
    """`ranges` as ONNX Runtime's TensorQuantOverrides, adjusted as ONNX Runtime adjusts its own
    calibration: a Relu's or Clip's input takes the range of its output when nothing else reads it
    (so the activation folds into the convolution before it), and Softmax outputs keep [0, 1]."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    readers = tensor_readers(model)
    ranges = dict(ranges)
    for node in model.graph.node:
        if node.name in fp32:
            continue
        if node.op_type in ("Relu", "Clip") and len(readers.get(node.input[0], [])) == 1 and node.output[0] in ranges:
            ranges[node.input[0]] = ranges[node.output[0]]
        elif node.op_type == "Softmax":
            ranges.pop(node.output[0], None)
    return {name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for name, (lo, hi) in ranges.items()}


class ListReader:
    """A calibration reader over pairs already in memory (their inputs named in `names`)."""

    def __init__(self, items: list[dict[str, np.ndarray]], names: list[str] | None = None) -> None:
        self.items = [{k: v for k, v in item.items() if names is None or k in names} for item in items]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.items):
            return None
        self.position += 1
        return self.items[self.position - 1]

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.items)


def fp32_nodes(path: Path) -> list[str]:
    """The nodes kept in fp32: the first convolutions (first_convs) and every node that computes
    their input, i.e. the per-frame standardisation. Quantizing the standardised frame to 8 bits
    alone changed the class of 4 of the demo model's 100 validation pairs: the frame is where
    precision matters most."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    first = first_convs(path)
    producer = {out: node for node in model.graph.node for out in node.output}
    upstream: set[str] = set()
    todo = [node.input[0] for node in model.graph.node if node.name in first]
    while todo:
        node = producer.get(todo.pop())
        if node is not None and node.name not in upstream:
            upstream.add(node.name)
            todo.extend(node.input)
    return first + sorted(upstream)


def first_convs(path: Path) -> list[str]:
    """The convolutions that read the frames (graph inputs of rank 4) with no convolution between:
    the first layer of each encoder pass. As int8, FUME's (a 3x3 kernel on one channel, a 9-long dot
    product) ran 2x slower than fp32 on a 2-core AVX2 CPU at 640x480."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    readers = tensor_readers(model)
    todo = [i.name for i in model.graph.input if len(i.type.tensor_type.shape.dim) == 4]
    seen: set[str] = set()
    first: list[str] = []
    while todo:
        for node in readers.get(todo.pop(), []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type == "Conv":
                first.append(node.name)
            else:
                todo.extend(node.output)
    return first


def tensor_readers(model: Any) -> dict[str, list[Any]]:
    """The nodes of an ONNX model that read each tensor, by tensor name."""
    readers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers
