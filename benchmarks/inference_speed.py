"""Speed goals for one 640x480 CO2 + CH4 pair on this CPU (issues 6 and 14), each measured beside
plain Fast-SCNN (two passes, one per gas) timed alternately, call by call, in the same process:

- ONNX Runtime fp32: FUME's time <= 0.87x Fast-SCNN's (median of the call-by-call ratios), batch 1;
- ONNX Runtime int8: >= 1.4x faster than the fp32 file (both timed alternately in one process);
- PyTorch (eager, BN folded, channels_last) >= 10 pairs/s;
- throughput per pair at batch 2 and 4 (several tubes filmed at once).

    .venv/bin/python benchmarks/inference_speed.py                      # untrained FUME (speed only)
    .venv/bin/python benchmarks/inference_speed.py --compile            # also torch.compile
    .venv/bin/python benchmarks/inference_speed.py --checkpoint best.ckpt --calibration data/paired_train_annotations.csv
        # + int8 accuracy: change of mIoU and balanced accuracy on the run's val split (goal: >= -1 point)

Prints medians and ratios with the machine's load average before and after (a shared machine's
speed drifts; the ratios, timed alternately, drift much less); writes everything to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from fume.inference.benchmark import run_benchmark

MAX_TIME_RATIO = 0.87  # FUME fp32 time / Fast-SCNN pair time
MIN_INT8_GAIN = 1.4  # fp32 time / int8 time
MIN_TORCH_PAIRS_PER_S = 10.0
MAX_INT8_LOSS_POINTS = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="time this checkpoint (and measure int8 accuracy with --calibration)")
    parser.add_argument("--calibration", type=Path, help="paired CSV to calibrate int8 on")
    parser.add_argument("--validation", type=Path, help="paired CSV for the int8 accuracy change (default: the run's val split)")
    parser.add_argument("--data-root", type=Path, help="folder the CSVs' paths are relative to")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about a minute to compile)")
    parser.add_argument("--batches", default="1,2,4", help="batch sizes for the ONNX Runtime backends")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch backends")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    common = dict(
        model=None if args.checkpoint else "fume", checkpoint=args.checkpoint, size=(640, 480), threads=args.threads,
        runs=args.runs, warmup=5, compare="fastscnn", calibration=args.calibration, data_root=args.data_root,
        progress=lambda text: print(f"... {text}", flush=True),
    )
    load_before = os.getloadavg()
    report = run_benchmark(backends=["onnxruntime", "onnxruntime-int8"], batches=[int(b) for b in args.batches.split(",")], **common)
    torch_backends = [] if args.no_torch else ["torch"] + (["torch-compile"] if args.compile else [])
    if torch_backends:
        report["results"] += run_benchmark(backends=torch_backends, batches=[1], **common)["results"]
    m = report["machine"]
    print(f"\n{m['cpu']}, {m['cpu_count']} cores; load average before {['%.1f' % x for x in load_before]}, "
          f"after {['%.1f' % x for x in m.get('load_average', [])]}")
    print(f"FUME: {report['model']['params'] / 1e6:.2f} M parameters, {report['model']['gmacs']:.2f} GMACs per 640x480 pair\n")
    print(f"{'backend':<18}{'batch':>6}{'p50 ms':>8}{'pairs/s':>9}{'Fast-SCNN/s':>13}{'time ratio':>11}{'int8 gain':>10}  goal")
    for r in report["results"]:
        ratio, gain = r["time_ratio"], r.get("speedup_over_fp32")
        if r["backend"] == "onnxruntime" and r["batch"] == 1:
            goal = f"time ratio <= {MAX_TIME_RATIO}: {'met' if ratio <= MAX_TIME_RATIO else 'not met'}"
        elif r["backend"] == "onnxruntime-int8" and r["batch"] == 1:
            goal = f"int8 gain >= {MIN_INT8_GAIN}: {'met' if gain >= MIN_INT8_GAIN else 'not met'}"
        elif r["backend"].startswith("torch"):
            goal = f">= {MIN_TORCH_PAIRS_PER_S:.0f} pairs/s: {'met' if r['pairs_per_s'] >= MIN_TORCH_PAIRS_PER_S else 'not met'}"
        else:
            goal = ""
        print(f"{r['backend']:<18}{r['batch']:>6}{r['p50_ms']:>8.1f}{r['pairs_per_s']:>9.1f}{r['reference']['pairs_per_s']:>13.1f}"
              f"{ratio:>11.2f}{f'{gain:.2f}x' if gain else '-':>10}  {goal}")
    print("\ntime ratio = median over alternating calls of FUME's time / Fast-SCNN's (two passes, one per gas);"
          "\nint8 gain = median over alternating calls of the fp32 file's time / the int8 file's; pairs/s = batch / p50")

    if args.checkpoint and args.calibration:
        from fume.workflows.export import export_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            result = export_checkpoint(args.checkpoint, Path(tmp) / "model.onnx", quantize="int8", calibration=args.calibration,
                                       validation=args.validation, data_root=args.data_root)
        q = result.int8
        report["int8_accuracy"] = q
        print(f"\nint8 accuracy on {q['fp32']['num_pairs']} validation pairs ({q['validation_table']}):")
        for key in ("miou", "balanced_accuracy"):
            delta = 100 * q["delta"][key]
            print(f"  {key:<18} fp32 {100 * q['fp32'][key]:6.2f}  int8 {100 * q['int8'][key]:6.2f}  change {delta:+.2f} points"
                  f"  ({'within' if delta >= -MAX_INT8_LOSS_POINTS else 'beyond'} the 1-point goal)")
        print(f"  same class as fp32: {100 * q['int8']['same_class_as_fp32']:.1f} % of pairs; "
              f"same pixel label: {100 * q['int8']['same_pixel_as_fp32']:.2f} %")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
