"""`fume export`: a checkpoint -> ONNX (fp32, checked against PyTorch) and optionally int8, with
the fp32 -> int8 change of the scores on the validation split (through the evaluation engine, the
same path as `fume evaluate`).

Nothing is written under its final name until every step has passed; a write that fails (a full
disk, a read-only folder) ends with one WriteError naming the final path (fume.io).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fume.data.dataset import read_paired_table
from fume.errors import ConfigError, DataError
from fume.evaluation.engine import evaluate_predictors
from fume.inference.backends import OnnxBackend
from fume.inference.onnx import (
    DEFAULT_OPSET,
    PARITY_MAX_ABS_DIFF,
    PARITY_MIN_AGREEMENT,
    ParityReport,
    add_metadata,
    check_parity,
    export_fp32,
    export_onnx,
    opset_of,
)
from fume.inference.predictor import Predictor
from fume.inference.quantize import DEFAULT_CALIBRATION_PAIRS, CalibrationReader, item_inputs, paired_dataset, pick_evenly, quantize_int8
from fume.io import staged_dir, write_json
from fume.models.checkpoint import load_model_from_checkpoint

# The scores export reports for fp32 and int8 (a subset of fume evaluate's metrics.json).
ACCURACY_KEYS = ("miou", "iou_gas", "co2_miou", "ch4_miou", "same_pixel_as_fp32", "balanced_accuracy", "accuracy", "macro_f1", "same_class_as_fp32")


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
    calib_set = val_table = None
    if quantize:
        calib_set = paired_dataset(calibration, data_root, size, labels, config.data.frame_window)
        if len(calib_set) == 0:
            raise DataError(f"calibration table {calibration} has no rows")
        if validation is None:
            validation = config.data.paired_table("val")
            val_root = Path(config.data.dataset_root if data_root is None else data_root)
        else:
            val_root = Path(data_root) if data_root is not None else Path(validation).parent
        if not Path(validation).is_file():
            raise DataError(f"validation table not found: {validation}; pass --validation PAIRED_CSV (the val split of your data)")
        val_table = read_paired_table(validation)

    # The work folder lies inside the staging folder: a folder that cannot be written fails at the
    # first write with one WriteError naming it (fume.io), and nothing is left behind.
    with staged_dir(out_path.parent) as staging, tempfile.TemporaryDirectory(prefix=f".{out_path.stem}.work-", dir=staging) as work:
        fp32 = staging / out_path.name
        output_names = export_fp32(model, config, fp32, size, opset)
        backend = OnnxBackend(fp32, source=str(out_path))
        real = [item_inputs(calib_set[i]) for i in pick_evenly(len(calib_set), 2)] if calib_set is not None else None
        parity = check_parity(model, backend, size, real)
        result = ExportResult(out_path, size, opset_of(fp32), output_names, parity)
        if quantize:
            result.int8_path = int8_path_for(out_path)
            int8 = staging / result.int8_path.name
            indices = pick_evenly(len(calib_set), calibration_pairs)
            tick = progress("calibrating int8", len(indices)) if progress else None
            plain = Path(work) / "for_int8.onnx"  # the same network without the fp32-only gate spreads
            export_onnx(model, plain, size, opset or DEFAULT_OPSET, for_int8=True)
            quantize_int8(plain, int8, CalibrationReader(calib_set, indices, tick), Path(work))
            add_metadata(int8, config, size)
            tick = progress("validating fp32 and int8", 2 * len(val_table)) if progress else None
            predictors = {
                "fp32": Predictor(backend, size, labels, source=str(out_path)),
                "int8": Predictor(OnnxBackend(int8, source=str(result.int8_path)), size, labels, source=str(result.int8_path)),
            }
            scores = evaluate_predictors(
                predictors, val_table, val_root, batch_size=1, boundary=False,
                progress=(lambda n: [tick() for _ in range(2 * n)]) if tick else None,
            )
            before, after = (_accuracy(scores[name].metrics, len(val_table)) for name in ("fp32", "int8"))
            result.int8 = {
                "calibration_table": str(calibration),
                "calibration_pairs": len(indices),
                "validation_table": str(validation),
                "fp32": before,
                "int8": after,
                "delta": {k: after[k] - before[k] for k in ("miou", "balanced_accuracy") if before.get(k) is not None},
            }
        result.report_path = out_path.with_suffix(".json")
        write_json(staging / result.report_path.name, result.to_dict())
    return result


def _accuracy(metrics: dict[str, Any], pairs: int) -> dict[str, Any]:
    return {"num_pairs": pairs, **{k: metrics[k] for k in ACCURACY_KEYS if metrics.get(k) is not None}}
