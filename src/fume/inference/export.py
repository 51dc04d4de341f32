"""`fume export`: a checkpoint -> ONNX (fp32, checked against PyTorch) and optionally int8.

The ONNX graph itself comes from fume.models.onnx_export (inputs co2, ch4, modality_mask; the
model's output names; dynamic batch; fixed H x W). This module adds FUME's metadata (the run's
configuration: class names, pH mapping, frame size), the parity check, static int8 quantization
calibrated on the user's frames, and the accuracy change on the validation split.

Nothing is written under its final name until every step has passed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fume.data.labels import GASES
from fume.errors import ConfigError, DataError, FumeError
from fume.inference.backends import META_CONFIG, META_IMAGE_SIZE, OnnxBackend

# Parity: max |torch - onnxruntime| <= PARITY_MAX_ABS_DIFF x max(1, largest |logit| of that output).
# For outputs within [-1, 1] this is the absolute 1e-4; a trained model's confident seg
# logits reach 50-160, where float32 rounding alone moves logits by 1e-4 (measured up to 1.6e-4 on a
# quickstart checkpoint, with every argmax equal), so the allowance scales with the output's range.
PARITY_MAX_ABS_DIFF = 1e-4
PARITY_MIN_AGREEMENT = 0.999  # smallest allowed share of pixels (and pairs) with the same argmax
DEFAULT_CALIBRATION_PAIRS = 64


def add_metadata(onnx_path: Path, config: Any, size: tuple[int, int]) -> None:
    """Store the run's configuration and frame size in the ONNX file, so a deployed file alone says
    which classes it predicts and how pH maps to them."""
    import onnx

    model = onnx.load(str(onnx_path))
    entries = {META_CONFIG: json.dumps(config.to_dict()), META_IMAGE_SIZE: f"{size[0]}x{size[1]}", "fume.model": config.model.name}
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "fume"
    onnx.save(model, str(onnx_path))


def export_fp32(model: Any, config: Any, path: Path, size: tuple[int, int], opset: int | None = None) -> list[str]:
    """Export `model` to `path` with FUME's metadata; returns the output names."""
    from fume.models.onnx_export import DEFAULT_OPSET, export_onnx

    try:
        names = export_onnx(model, path, size=size, opset=opset or DEFAULT_OPSET)
    except ValueError as err:  # e.g. a frame size that is not a multiple of 32
        raise ConfigError(f"cannot export at {size[0]}x{size[1]}: {err}") from None
    add_metadata(path, config, size)
    return names


def onnx_bytes(model: Any, config: Any, size: tuple[int, int]) -> bytes:
    """The exported model as bytes (for an in-memory ONNX Runtime session)."""
    with tempfile.TemporaryDirectory(prefix="fume-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_fp32(model, config, path, size)
        return path.read_bytes()


# ---------------------------------------------------------------- parity


def parity_inputs(size: tuple[int, int], real: list[dict[str, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """A batch of 3: two random pairs (one with both gases, one CO2 only, so the modality mask is
    exercised) and, when given, real pairs appended."""
    width, height = size
    rng = np.random.default_rng(0)
    co2 = rng.random((2, 1, height, width), dtype=np.float32)
    ch4 = rng.random((2, 1, height, width), dtype=np.float32)
    mask = np.array([[1, 1], [1, 0]], np.float32)
    ch4[1] = 0.0
    batch = {"co2": co2, "ch4": ch4, "modality_mask": mask}
    for item in real or []:
        for key in batch:
            batch[key] = np.concatenate([batch[key], item[key]])
    return batch


@dataclass
class ParityReport:
    max_abs_diff: dict[str, float]
    argmax_agreement: dict[str, float]
    # max |diff| / (PARITY_MAX_ABS_DIFF x max(1, max |torch logit|)) per output: <= 1 passes.
    tolerance_used: dict[str, float]

    @property
    def ok(self) -> bool:
        return (
            all(t <= 1.0 for t in self.tolerance_used.values())
            and all(a >= PARITY_MIN_AGREEMENT for a in self.argmax_agreement.values())
        )

    def describe(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e} ({100 * self.tolerance_used[k]:.0f} % of its allowance)" for k, v in self.max_abs_diff.items())
        agree = ", ".join(f"{k} {100 * v:.3f} %" for k, v in self.argmax_agreement.items())
        return (
            f"max |torch - onnxruntime| of the logits: {diffs} (allowed {PARITY_MAX_ABS_DIFF:g} x max(1, largest |logit|)); "
            f"same argmax: {agree} (required {100 * PARITY_MIN_AGREEMENT:.1f} %)"
        )


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> ParityReport:
    """Largest absolute difference and argmax agreement (over pixels, or pairs for cls_logits) per output."""
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise FumeError(f"the ONNX model lacks output(s) {missing} that the PyTorch model produces")
    diffs, agreement, used = {}, {}, {}
    for name, ref in reference.items():
        got = candidate[name]
        if got.shape != ref.shape:
            raise FumeError(f"ONNX output {name} has shape {got.shape}, PyTorch {ref.shape}")
        diff = np.abs(got.astype(np.float64) - ref)
        diffs[name] = float(diff.max())
        used[name] = float(diff.max() / (PARITY_MAX_ABS_DIFF * max(1.0, float(np.abs(ref).max()))))
        agreement[name] = float((got.argmax(1) == ref.argmax(1)).mean())
    return ParityReport(diffs, agreement, used)


def check_parity(model: Any, backend: OnnxBackend, size: tuple[int, int], real: list[dict[str, np.ndarray]] | None = None) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same batch; FumeError with the figures if they disagree."""
    import torch

    batch = parity_inputs(size, real)
    with torch.inference_mode():
        reference = {k: v.float().numpy() for k, v in model.eval()(*(torch.from_numpy(batch[k]) for k in ("co2", "ch4", "modality_mask"))).items()}
    report = compare_outputs(reference, backend(batch["co2"], batch["ch4"], batch["modality_mask"]))
    if not report.ok:
        raise FumeError(f"ONNX export does not match PyTorch, nothing written: {report.describe()}")
    return report


# ---------------------------------------------------------------- data for calibration and validation


def paired_dataset(table: str | os.PathLike, root: str | os.PathLike | None, size: tuple[int, int], label_config: Any, native_masks: bool = False):
    """PairedDataset over a paired CSV; paths relative to `root` (default: the CSV's folder)."""
    from fume.data.dataset import PairedDataset

    table = Path(table)
    if not table.is_file():
        raise DataError(f"paired table not found: {table}")
    root = Path(root) if root is not None else table.parent
    return PairedDataset(table, root, image_size=size, native_masks=native_masks, label_config=label_config)


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


def evaluate_backends(backends: dict[str, Callable], dataset: Any, progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """mIoU (at native resolution, like `fume evaluate`) and balanced accuracy of each backend on
    `dataset`, plus how often the others agree with the first one (same class, same pixel label)."""
    import torch

    from fume.evaluation.metrics import ClassificationMetrics, SegmentationMetrics
    from fume.inference.predictor import native_mask, softmax

    names = list(dataset.label_config.class_names)
    seg = {b: SegmentationMetrics(num_classes=3, boundary=False) for b in backends}
    cls = {b: ClassificationMetrics(num_classes=len(names), class_names=names) for b in backends}
    same = {b: np.zeros(4, np.int64) for b in backends}  # same class, pairs, same pixels, pixels
    has_seg = has_cls = False
    for index in range(len(dataset)):
        item = dataset[index]
        inputs = item_inputs(item)
        first: dict[str, Any] = {}
        for name, backend in backends.items():
            outputs = backend(inputs["co2"], inputs["ch4"], inputs["modality_mask"])
            if "cls_logits" in outputs:
                probs = softmax(outputs["cls_logits"])
                cls[name].update(torch.from_numpy(probs), item["class_label"][None])
                pred_class = int(probs[0].argmax())
                first.setdefault("class", pred_class)
                same[name][:2] += (pred_class == first["class"], 1)
                has_cls = True
            for g, gas in enumerate(GASES):
                key = f"{gas}_seg_logits"
                if key in outputs and inputs["modality_mask"][0, g] > 0.5:
                    native = item[f"{gas}_native_mask"]
                    pred = native_mask(outputs[key][0], tuple(native.shape))
                    seg[name].update(torch.from_numpy(pred.astype(np.int64))[None], native[None], gas)
                    ref = first.setdefault(gas, pred)
                    same[name][2:] += (int((pred == ref).sum()), pred.size)
                    has_seg = True
            if progress is not None:
                progress()
    result: dict[str, Any] = {}
    for name in backends:
        metrics: dict[str, Any] = {"num_pairs": len(dataset)}
        if has_seg:
            s = seg[name].compute()
            metrics.update(miou=s["miou"], iou_gas=s["iou_gas"], co2_miou=s["co2_miou"], ch4_miou=s["ch4_miou"])
            metrics["same_pixel_as_" + next(iter(backends))] = same[name][2] / max(1, same[name][3])
        if has_cls:
            c = cls[name].compute()
            metrics.update(balanced_accuracy=c["balanced_accuracy"], accuracy=c["accuracy"], macro_f1=c["macro_f1"])
            metrics["same_class_as_" + next(iter(backends))] = same[name][0] / max(1, same[name][1])
        result[name] = metrics
    return result


# ---------------------------------------------------------------- int8


class _CalibrationReader:
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


# ---------------------------------------------------------------- the command


@dataclass
class ExportResult:
    onnx_path: Path
    image_size: tuple[int, int]
    opset: int
    output_names: list[str]
    parity: ParityReport
    int8_path: Path | None = None
    int8: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "onnx": str(self.onnx_path),
            "image_size": list(self.image_size),
            "opset": self.opset,
            "inputs": ["co2", "ch4", "modality_mask"],
            "outputs": self.output_names,
            "parity": {"max_abs_diff": self.parity.max_abs_diff, "tolerance_used": self.parity.tolerance_used,
                       "argmax_agreement": self.parity.argmax_agreement,
                       "limits": {"max_abs_diff_per_unit_logit": PARITY_MAX_ABS_DIFF, "min_argmax_agreement": PARITY_MIN_AGREEMENT}},
        }
        if self.int8_path is not None:
            out["int8"] = {"onnx": str(self.int8_path), **self.int8}
        return out


def default_onnx_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".onnx")


def int8_path_for(path: Path) -> Path:
    return path.with_name(f"{path.stem}.int8{path.suffix}")


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    opset: int | None = None,
    quantize: str | None = None,
    calibration: str | os.PathLike | None = None,
    validation: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    calibration_pairs: int = DEFAULT_CALIBRATION_PAIRS,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> ExportResult:
    """Write OUT (default: the checkpoint with .onnx), and with quantize="int8" also OUT's .int8.onnx
    and the fp32 -> int8 change of mIoU and balanced accuracy on the validation split (`validation`,
    default the run's val table). OUT's .json holds the figures. `progress(description, total)`
    returns a function to call once per step."""
    from fume.training.checkpoint import load_model_from_checkpoint

    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize!r} is not supported; the only choice is int8")
    if quantize and calibration is None:
        raise ConfigError("--quantize int8 needs --calibration PAIRED_CSV: frames of your own data to calibrate on")
    checkpoint = Path(checkpoint)
    model, config = load_model_from_checkpoint(checkpoint)
    size = tuple(config.data.image_size)
    labels = config.data.labels
    out_path = Path(out) if out is not None else default_onnx_path(checkpoint)
    if out_path.suffix != ".onnx":
        raise ConfigError(f"output {out_path} must end in .onnx")

    # Read the data tables before the slow steps, so a wrong path fails at once.
    calib_set = val_set = None
    if quantize:
        calib_set = paired_dataset(calibration, data_root, size, labels)
        if len(calib_set) == 0:
            raise DataError(f"calibration table {calibration} has no rows")
        if validation is None:
            validation = config.data.paired_table("val")
            val_root = config.data.dataset_root if data_root is None else data_root
        else:
            val_root = data_root
        if not Path(validation).is_file():
            raise DataError(f"validation table not found: {validation}; pass --validation PAIRED_CSV (the val split of your data)")
        val_set = paired_dataset(validation, val_root, size, labels, native_masks=True)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.stem}.export-", dir=out_path.parent))
    try:
        fp32 = staging / "model.onnx"
        output_names = export_fp32(model, config, fp32, size, opset)
        backend = OnnxBackend(fp32, source=str(out_path))
        real = [item_inputs(calib_set[i]) for i in pick_evenly(len(calib_set), 2)] if calib_set is not None else None
        parity = check_parity(model, backend, size, real)
        result = ExportResult(out_path, size, _opset_of(fp32), output_names, parity)
        moves = [(fp32, out_path)]
        if quantize:
            int8 = staging / "model.int8.onnx"
            indices = pick_evenly(len(calib_set), calibration_pairs)
            tick = progress("calibrating int8", len(indices)) if progress else None
            quantize_int8(fp32, int8, _CalibrationReader(calib_set, indices, tick), staging)
            add_metadata(int8, config, size)
            tick = progress("validating fp32 and int8", 2 * len(val_set)) if progress else None
            scores = evaluate_backends({"fp32": backend, "int8": OnnxBackend(int8, source=str(int8_path_for(out_path)))}, val_set, tick)
            before, after = scores["fp32"], scores["int8"]
            delta = {k: after[k] - before[k] for k in ("miou", "balanced_accuracy") if k in before}
            result.int8_path = int8_path_for(out_path)
            result.int8 = {
                "calibration_table": str(calibration),
                "calibration_pairs": len(indices),
                "validation_table": str(validation),
                "fp32": before,
                "int8": after,
                "delta": delta,
            }
            moves.append((int8, result.int8_path))
        report = staging / "export.json"
        result.report_path = out_path.with_suffix(".json")
        report.write_text(json.dumps(_jsonable(result.to_dict()), indent=2) + "\n", encoding="utf-8")
        moves.append((report, result.report_path))
        for src, dst in moves:
            os.replace(src, dst)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))


def _jsonable(value: Any) -> Any:
    from fume.evaluation.evaluate import jsonable

    return jsonable(value)
