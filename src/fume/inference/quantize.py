"""Static int8 quantization of a FUME ONNX file, calibrated on the user's own frames."""

from __future__ import annotations

import os
from collections.abc import Callable
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


def quantize_int8(fp32_path: Path, out_path: Path, reader: Any, work_dir: Path) -> None:
    """Static QDQ quantization: int8 weights (per channel), uint8 activations with ranges from the
    calibration reader (min/max). The graph is first shape-inferred and optimised as ONNX Runtime
    recommends (BN folded into the convolutions, so the fused conv is what gets quantized).

    reduce_range: weights use 7 bits. On x86 CPUs without VNNI (AVX2, most farm PCs) ONNX Runtime
    multiplies uint8 x int8 pairs and adds them in int16, which saturates with full 8-bit weights;
    on a quickstart checkpoint that flipped the class of 2 of 50 validation pairs (balanced accuracy
    -3.3 points), with 7-bit weights none (mIoU -0.45 points), at the same speed."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work_dir / "preprocessed.onnx"
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
    except Exception:  # ONNX Runtime's symbolic shape inference gives up on some graphs (a Reshape of
        # a computed shape in classification_only); ONNX's own shape inference is enough there.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
        reduce_range=True,
        nodes_to_exclude=single_channel_convs(pre),
    )


def single_channel_convs(path: Path) -> list[str]:
    """Convolutions reading one input channel (the first layer, on the gray frame). Kept in fp32:
    as int8 their 3x3 kernel is a 9-long dot product that ONNX Runtime ran 2x slower than fp32
    (profiled on a 2-core AVX2 CPU at 640x480), and the frame is where precision matters most."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {init.name: init for init in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in weights:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group == 1 and weights[node.input[1]].dims[1] == 1:
            names.append(node.name)
    return names
