"""int8 settings compared: speed gain over fp32 (FUME at 640x480, each int8 file timed alternately
with the fp32 file in one process) and, with --checkpoint, the change of mIoU, balanced accuracy
and classes against fp32 on the run's validation split.

    .venv/bin/python benchmarks/int8_variants.py [--runs 20] [--threads 2]
    .venv/bin/python benchmarks/int8_variants.py --checkpoint best.ckpt --dataset DATASET_DIR --no-speed
    .venv/bin/python benchmarks/int8_variants.py --no-speed --calibration-cost [--pairs 64]

Settings (ONNX Runtime's quantize_static, uint8 activations, 7-bit int8 weights, the first
convolution always fp32; MinMax calibration unless the name says percentile): the default of
`fume export --quantize int8` and the variants the inference-speed issue asked about. Speed uses an untrained FUME (speed does not
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
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from fume.inference.backends import OnnxBackend
from fume.inference.onnx import export_onnx
from fume.inference.quantize import single_channel_convs
from fume.machine import machine_description, time_calls

H32 = tuple(f"/encoder/global_features/global_features.{i}" for i in range(6, 10))
MINMAX = (CalibrationMethod.MinMax, {})
# ONNX Runtime's own default percentile. Accuracy only: the graph is the default's (same speed), and
# its calibrater keeps every activation of every calibration pair: at 640x480 with 64 pairs 20 GB
# and 87 s (MinMax: 1.2 GB, 8 s); it also stops on a tensor of (near) constant value ("Too many bins").
PERCENTILE = (CalibrationMethod.Percentile, {"CalibPercentile": 99.999})
VARIANTS = {  # name: (quant format, per channel, operator types or None for all, node-name prefixes kept fp32, depthwise fp32, calibration)
    "default: QDQ, per channel, every operator": (QuantFormat.QDQ, True, None, (), False, MINMAX),
    "fusion and classifier in fp32": (QuantFormat.QDQ, True, None, ("/fusion", "/classifier"), False, MINMAX),
    "fusion, classifier and H/32 stage in fp32": (QuantFormat.QDQ, True, None, ("/fusion", "/classifier", *H32), False, MINMAX),
    "QDQ, weights per tensor": (QuantFormat.QDQ, False, None, (), False, MINMAX),
    "QOperator, conv and matmul only": (QuantFormat.QOperator, True, ["Conv", "MatMul"], (), False, MINMAX),
    "QDQ, conv and matmul only": (QuantFormat.QDQ, True, ["Conv", "MatMul"], (), False, MINMAX),
    "QDQ, pointwise conv only (depthwise fp32)": (QuantFormat.QDQ, True, ["Conv", "MatMul"], (), True, MINMAX),
    "default, percentile 99.999 calibration": (QuantFormat.QDQ, True, None, (), False, PERCENTILE),
}
TIMED = [name for name, setting in VARIANTS.items() if setting[-1] is MINMAX]  # the others share a timed graph


def quantize(pre: Path, out: Path, reader, setting) -> None:
    fmt, per_channel, op_types, fp32_prefixes, depthwise_fp32, (method, calibration_options) = setting
    model = onnx.load(str(pre), load_external_data=False)
    weights = {i.name: i for i in model.graph.initializer}
    keep = single_channel_convs(pre) + [n.name for n in model.graph.node if fp32_prefixes and n.name.startswith(fp32_prefixes)]
    if depthwise_fp32:
        keep += [
            n.name for n in model.graph.node
            if n.op_type == "Conv" and n.input[1] in weights and next((a.i for a in n.attribute if a.name == "group"), 1) > 1
        ]
    extra = {"op_types_to_quantize": op_types} if op_types else {}
    quantize_static(
        str(pre), str(out), reader, quant_format=fmt, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        per_channel=per_channel, calibrate_method=method, reduce_range=True, nodes_to_exclude=keep, extra_options=calibration_options, **extra,
    )


def graph_to_quantize(model, size: tuple[int, int], work: Path, stem: str) -> Path:
    """`model` exported as `fume export --quantize int8` quantizes it (no gate spreads), pre-processed."""
    plain, pre = work / f"{stem}_plain.onnx", work / f"{stem}_pre.onnx"
    export_onnx(model, plain, size, for_int8=True)
    quant_pre_process(str(plain), str(pre), skip_symbolic_shape=False)
    return pre


def speed(args, work: Path) -> None:
    import torch

    from fume.inference.benchmark import _ListReader, synthetic_pairs
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
        quantize(pre, out, _ListReader(calibration, ["co2", "ch4", "modality_mask"]), VARIANTS[name])
        runners[name] = OnnxBackend(out, threads=args.threads)
    rng = np.random.default_rng(0)
    x = [rng.random((1, 1, 480, 640), dtype=np.float32) for _ in range(2)] + [np.ones((1, 2), np.float32)]
    print(f"machine: {machine_description()}; load average before {os.getloadavg()}")
    timed = time_calls({name: (lambda r=r: r(*x)) for name, r in runners.items()}, runs=args.runs, warmup=2)
    print(f"load average after {os.getloadavg()}\n\nint8 gain = median over alternating calls of fp32 time / int8 time")
    for name in TIMED:
        gain = statistics.median(a / b for a, b in zip(timed["fp32"]["times_ms"], timed[name]["times_ms"]))
        print(f"  {name:<45} p50 {timed[name]['p50_ms']:7.1f} ms (fp32 {timed['fp32']['p50_ms']:.1f})  gain {gain:.2f}x")


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
        print(f"  {name:<45} mIoU {100 * (m['miou'] - base['miou']):+.2f}  balanced accuracy "
              f"{100 * (m['balanced_accuracy'] - base['balanced_accuracy']):+.2f} points  same class {round(m['same_class_as_fp32'] * len(table))}/{len(table)}")


CALIBRATIONS_COSTED = ("default: QDQ, per channel, every operator", "default, percentile 99.999 calibration")


def calibration_cost(args) -> None:
    """Time and peak memory of calibrating + quantizing FUME at 640x480 on `--pairs` frames, MinMax
    against percentile, each in a fresh process of this script (peak RSS is per process)."""
    import subprocess
    import sys

    print(f"\ncalibrating and quantizing FUME at 640x480 on {args.pairs} pairs:")
    for name in CALIBRATIONS_COSTED:
        done = subprocess.run([sys.executable, __file__, "--calibrate-once", name, "--pairs", str(args.pairs)], capture_output=True, text=True)
        print(f"  {name:<45} {(done.stdout.strip() or done.stderr.strip()).splitlines()[-1]}")


def calibrate_once(name: str, pairs: int, work: Path) -> None:
    """One setting's calibration and quantization, timed, with the process's peak memory. A FUME with
    random batch-norm statistics: an untrained one has constant activations that percentile refuses."""
    import resource
    import sys
    import time

    import torch

    from fume.inference.benchmark import _ListReader, synthetic_pairs
    from fume.models import create_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
    from model_helpers import make_nontrivial

    torch.manual_seed(0)
    pre = graph_to_quantize(make_nontrivial(create_model("fume")).eval(), (640, 480), work, "cost")
    calibration = synthetic_pairs((640, 480), pairs)
    start = time.perf_counter()
    quantize(pre, work / "cost.onnx", _ListReader(calibration, ["co2", "ch4", "modality_mask"]), VARIANTS[name])
    print(f"{time.perf_counter() - start:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="also measure accuracy on this checkpoint's validation split")
    parser.add_argument("--dataset", type=Path, help="the dataset folder of the checkpoint's run (paired_*_annotations.csv)")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-cost", action="store_true", help="also time MinMax and percentile calibration at 640x480")
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
