"""int8 settings compared: speed gain over fp32 (FUME at 640x480, each int8 file timed alternately
with the fp32 file in one process) and, with --checkpoint, the change of mIoU, balanced accuracy
and classes against fp32 on the run's validation split.

    .venv/bin/python benchmarks/int8_variants.py [--runs 20] [--threads 2]
    .venv/bin/python benchmarks/int8_variants.py --checkpoint best.ckpt --dataset DATASET_DIR --no-speed
    .venv/bin/python benchmarks/int8_variants.py --no-speed --calibration-cost [--pairs 64]

Settings (ONNX Runtime's quantize_static, uint8 activations, 7-bit int8 weights, the first
convolution always fp32): the default of `fume export --quantize int8` (activation ranges at the
99.999th percentile of |x|, the frame standardisation in fp32), the min/max ranges it used before,
and the variants the inference-speed issue asked about. Speed uses an untrained FUME (speed does not
depend on the weights) calibrated on synthetic frames; accuracy uses 64 calibration pairs of the
dataset's train table, as `fume export` does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx

from fume.inference.backends import OnnxBackend
from fume.inference.onnx import export_onnx
from fume.inference.quantize import first_convs, fp32_nodes, preprocess_for_int8, quantize_preprocessed
from fume.machine import machine_description, time_calls

H32 = tuple(f"/encoder/global_features/global_features.{i}" for i in range(6, 10))
DOWNSAMPLE = ("/encoder/downsample/",)
DEFAULT = "default: percentile ranges, standardisation fp32"
# name: options of quantize_preprocessed, plus "keep" (node-name prefixes also kept fp32),
# "depthwise_fp32" and "standardisation_int8" (only the first convolution fp32, as before)
VARIANTS: dict[str, dict] = {
    DEFAULT: {},
    "min/max ranges (the default until 2026-11-30)": {"percentile": 100.0, "standardisation_int8": True},
    "min/max ranges, standardisation fp32": {"percentile": 100.0},
    "percentile ranges, standardisation int8": {"standardisation_int8": True},
    "default, fusion and classifier in fp32": {"keep": ("/fusion", "/classifier")},
    "default, fusion, classifier and H/32 stage in fp32": {"keep": ("/fusion", "/classifier", *H32)},
    "default, downsampling stages in fp32": {"keep": DOWNSAMPLE},
    "default, weights per tensor": {"per_channel": False},
    "default, 8-bit uint8 weights (u8u8)": {"uint8_weights": True},
    "default, QOperator, conv and matmul only": {"quant_format": "QOperator", "op_types": ["Conv", "MatMul"]},
    "default, conv and matmul only": {"op_types": ["Conv", "MatMul"]},
    "default, pointwise conv only (depthwise fp32)": {"op_types": ["Conv", "MatMul"], "depthwise_fp32": True},
}
# Ranges do not change the graph: settings that differ from a timed one only in their ranges are not timed.
TIMED = [name for name, v in VARIANTS.items() if "percentile" not in v]


def quantize(pre: Path, out: Path, reader, variant: dict) -> None:
    options = dict(variant)
    prefixes, depthwise, standardisation_int8 = options.pop("keep", ()), options.pop("depthwise_fp32", False), options.pop("standardisation_int8", False)
    model = onnx.load(str(pre), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    keep = first_convs(pre) if standardisation_int8 else fp32_nodes(pre)
    keep += [n.name for n in model.graph.node if prefixes and n.name.startswith(prefixes)]
    if depthwise:
        keep += [
            n.name for n in model.graph.node
            if n.op_type == "Conv" and n.input[1] in weights and next((a.i for a in n.attribute if a.name == "group"), 1) > 1
        ]
    quantize_preprocessed(pre, out, reader, fp32=keep, **options)


def graph_to_quantize(model, size: tuple[int, int], work: Path, stem: str) -> Path:
    """`model` exported as `fume export --quantize int8` quantizes it (no gate spreads), pre-processed."""
    plain = work / f"{stem}_plain.onnx"
    export_onnx(model, plain, size, for_int8=True)
    return preprocess_for_int8(plain, work).rename(work / f"{stem}_pre.onnx")


def speed(args, work: Path) -> None:
    import torch

    from fume.inference.benchmark import synthetic_pairs
    from fume.inference.quantize import ListReader
    from fume.models import create_model

    torch.manual_seed(0)
    model = create_model("fume").eval()
    fp32 = work / "fp32.onnx"
    export_onnx(model, fp32, (640, 480))
    pre = graph_to_quantize(model, (640, 480), work, "speed")
    calibration = synthetic_pairs((640, 480), 6)
    runners = {"fp32": OnnxBackend(fp32, threads=args.threads)}
    for i, name in enumerate(TIMED):
        out = work / f"v{i}.onnx"
        quantize(pre, out, ListReader(calibration, ["co2", "ch4", "modality_mask"]), VARIANTS[name])
        runners[name] = OnnxBackend(out, threads=args.threads)
    rng = np.random.default_rng(0)
    x = [rng.random((1, 1, 480, 640), dtype=np.float32) for _ in range(2)] + [np.ones((1, 2), np.float32)]
    print(f"machine: {machine_description()}; load average before {os.getloadavg()}")
    timed = time_calls({name: (lambda r=r: r(*x)) for name, r in runners.items()}, runs=args.runs, warmup=2)
    print(f"load average after {os.getloadavg()}\n\nint8 gain = median over alternating calls of fp32 time / int8 time")
    for name in TIMED:
        gain = statistics.median(a / b for a, b in zip(timed["fp32"]["times_ms"], timed[name]["times_ms"]))
        print(f"  {name:<50} p50 {timed[name]['p50_ms']:7.1f} ms (fp32 {timed['fp32']['p50_ms']:.1f})  gain {gain:.2f}x")


def accuracy(args, work: Path) -> None:
    from fume.data.dataset import read_paired_table
    from fume.evaluation.engine import evaluate_predictors
    from fume.inference.predictor import Predictor
    from fume.inference.quantize import CalibrationReader, paired_dataset, pick_evenly
    from fume.models.checkpoint import load_model_from_checkpoint

    model, config = load_model_from_checkpoint(args.checkpoint)
    size, root = tuple(config.data.image_size), args.dataset
    fp32 = work / "c_fp32.onnx"
    export_onnx(model, fp32, size)
    pre = graph_to_quantize(model, size, work, "checkpoint")
    calib = paired_dataset(root / "paired_train_annotations.csv", root, size, config.data.labels)
    indices = pick_evenly(len(calib), 64)

    def predictor(path: Path) -> Predictor:
        return Predictor(OnnxBackend(path, check_io=False), size, config.data.labels, frame_window=config.data.frame_window)

    predictors = {"fp32": predictor(fp32)}
    for i, (name, setting) in enumerate(VARIANTS.items()):
        out = work / f"c{i}.onnx"
        quantize(pre, out, CalibrationReader(calib, indices), setting)
        predictors[name] = predictor(out)
    table = read_paired_table(root / "paired_val_annotations.csv")
    scores = evaluate_predictors(predictors, table, root, batch_size=1, boundary=False)
    base = scores["fp32"].metrics
    print(f"\n{len(table)} validation pairs; fp32 mIoU {100 * base['miou']:.2f}, balanced accuracy {100 * base['balanced_accuracy']:.2f}")
    for name in VARIANTS:
        m = scores[name].metrics
        print(f"  {name:<50} mIoU {100 * (m['miou'] - base['miou']):+.2f}  balanced accuracy "
              f"{100 * (m['balanced_accuracy'] - base['balanced_accuracy']):+.2f} points  same class {round(m['same_class_as_fp32'] * len(table))}/{len(table)}")


ORT_MINMAX = "ONNX Runtime's own min/max calibrater"
CALIBRATIONS_COSTED = (DEFAULT, ORT_MINMAX)


def calibration_cost(args) -> None:
    """Time and peak memory of calibrating + quantizing FUME at 640x480 on `--pairs` frames: the
    default (FUME's percentile calibrater) against ONNX Runtime's min/max calibrater, each in a
    fresh process of this script (peak RSS is per process)."""
    import subprocess
    import sys

    print(f"\ncalibrating and quantizing FUME at 640x480 on {args.pairs} pairs:")
    for name in CALIBRATIONS_COSTED:
        done = subprocess.run([sys.executable, __file__, "--calibrate-once", name, "--pairs", str(args.pairs)], capture_output=True, text=True)
        print(f"  {name:<50} {(done.stdout.strip() or done.stderr.strip()).splitlines()[-1]}")


def calibrate_once(name: str, pairs: int, work: Path) -> None:
    """One calibration and quantization, timed, with the process's peak memory, on a FUME with
    random batch-norm statistics (activations like a trained model's, not an untrained one's)."""
    import resource
    import sys
    import time

    import torch
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from fume.inference.benchmark import synthetic_pairs
    from fume.inference.quantize import ListReader
    from fume.models import create_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
    from model_helpers import make_nontrivial

    torch.manual_seed(0)
    pre = graph_to_quantize(make_nontrivial(create_model("fume")).eval(), (640, 480), work, "cost")
    reader = ListReader(synthetic_pairs((640, 480), pairs), ["co2", "ch4", "modality_mask"])
    start = time.perf_counter()
    if name == ORT_MINMAX:
        quantize_static(
            str(pre), str(work / "cost.onnx"), reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.MinMax, reduce_range=True,
            nodes_to_exclude=fp32_nodes(pre),
        )
    else:
        quantize(pre, work / "cost.onnx", reader, VARIANTS[name])
    print(f"{time.perf_counter() - start:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="also measure accuracy on this checkpoint's validation split")
    parser.add_argument("--dataset", type=Path, help="the dataset folder of the checkpoint's run (paired_*_annotations.csv)")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-cost", action="store_true", help="also time the default calibration and ONNX Runtime's min/max at 640x480")
    parser.add_argument("--pairs", type=int, default=64, help="calibration pairs for --calibration-cost (fume export's default)")
    parser.add_argument("--calibrate-once", choices=CALIBRATIONS_COSTED, help=argparse.SUPPRESS)  # --calibration-cost's child process
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fume-int8-") as tmp:
        if args.calibrate_once:
            return calibrate_once(args.calibrate_once, args.pairs, Path(tmp))
        if not args.no_speed:
            speed(args, Path(tmp))
        if args.checkpoint:
            accuracy(args, Path(tmp))
        if args.calibration_cost:
            calibration_cost(args)


if __name__ == "__main__":
    main()
