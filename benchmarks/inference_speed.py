"""Speed goals of issue 6 for one 640x480 CO2 + CH4 pair, batch 1, on this CPU:
ONNX Runtime fp32 >= 30 pairs/s, int8 >= 45 pairs/s, PyTorch (eager or torch.compile) >= 10 pairs/s,
each beside plain Fast-SCNN (two passes, one per gas) timed alternately in the same process.

    .venv/bin/python benchmarks/inference_speed.py                      # untrained FUME (speed only)
    .venv/bin/python benchmarks/inference_speed.py --compile            # also torch.compile
    .venv/bin/python benchmarks/inference_speed.py --checkpoint best.ckpt --calibration data/paired_train_annotations.csv
        # + int8 accuracy: change of mIoU and balanced accuracy on the run's val split (goal: >= -1 point)

Prints medians, the FUME / Fast-SCNN ratio and the machine's load; writes everything to --json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fume.inference.benchmark import run_benchmark

GOALS = {"torch": 10.0, "torch-compile": 10.0, "onnxruntime": 30.0, "onnxruntime-int8": 45.0}
MAX_INT8_LOSS_POINTS = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="time this checkpoint (and measure int8 accuracy with --calibration)")
    parser.add_argument("--calibration", type=Path, help="paired CSV to calibrate int8 on")
    parser.add_argument("--validation", type=Path, help="paired CSV for the int8 accuracy change (default: the run's val split)")
    parser.add_argument("--data-root", type=Path, help="folder the CSVs' paths are relative to")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about a minute to compile)")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    backends = ["torch", "onnxruntime", "onnxruntime-int8"] + (["torch-compile"] if args.compile else [])
    report = run_benchmark(
        model=None if args.checkpoint else "fume", checkpoint=args.checkpoint, size=(640, 480), batches=[1],
        backends=backends, threads=args.threads, runs=args.runs, warmup=5, compare="fastscnn",
        calibration=args.calibration, data_root=args.data_root, progress=lambda text: print(f"... {text}", flush=True),
    )
    m = report["machine"]
    print(f"\n{m['cpu']}, {m['cpu_count']} cores, load average at the end {['%.1f' % x for x in m.get('load_average', [])]}")
    print(f"FUME: {report['model']['params'] / 1e6:.2f} M parameters, {report['model']['gmacs']:.2f} GMACs per 640x480 pair\n")
    print(f"{'backend':<18}{'p50 ms':>8}{'p90 ms':>8}{'pairs/s':>9}{'goal':>7}{'met':>5}{'Fast-SCNN/s':>13}{'ratio':>7}")
    for r in report["results"]:
        goal = GOALS[r["backend"]]
        ref = r["reference"]
        print(f"{r['backend']:<18}{r['p50_ms']:>8.1f}{r['p90_ms']:>8.1f}{r['pairs_per_s']:>9.1f}{goal:>7.0f}"
              f"{'yes' if r['pairs_per_s'] >= goal else 'no':>5}{ref['pairs_per_s']:>13.1f}{r['speed_ratio']:>6.2f}x")
    print("\nratio = FUME pairs/s divided by Fast-SCNN pairs/s (two passes, one per gas), timed alternately in one process")

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
