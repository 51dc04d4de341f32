"""Speed of one 640x480 CO2 + CH4 pair (batch 1) for FUME against the plain Fast-SCNN reference
(two passes, one per gas), in eager PyTorch (as built, and prepared: batch norms folded,
channels-last) and in ONNX Runtime fp32, timed alternately so the ratio survives a shared machine
whose speed drifts.

    .venv/bin/python benchmarks/model_speed.py [--size 640x480] [--rounds 5] [--runs 10] [--threads 2]

Prints medians (ms, pairs/s) per model and backend, and FUME's time as a ratio to Fast-SCNN's.
ONNX Runtime sessions run with thread spinning off, so two sessions in one process do not slow
each other down.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from fume.contract import parse_size
from fume.inference.onnx import export_onnx
from fume.machine import machine_description
from fume.models import create_model
from fume.models.complexity import count_macs, count_parameters, example_pair
from fume.models.prepare import prepare_for_inference

MODELS = ("fume", "fastscnn")


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_calls(call, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--runs", type=int, default=10, help="timed calls per model per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    size = parse_size(args.size)
    torch.set_num_threads(args.threads)

    inputs = example_pair(size)
    feed = {"co2": inputs[0].numpy(), "ch4": inputs[1].numpy(), "modality_mask": inputs[2].numpy()}
    models = {name: create_model(name).eval() for name in MODELS}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for name, model in models.items():
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, path, size)
            sessions[name] = ort_session(path, args.threads)

        calls = {}
        for name in MODELS:
            calls[(name, "torch")] = lambda m=models[name]: m(*inputs)
            calls[(name, "torch-prepared")] = lambda m=prepare_for_inference(models[name]): m(*inputs)
            calls[(name, "onnxruntime")] = lambda s=sessions[name]: s.run(None, feed)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
        with torch.inference_mode():
            for call in calls.values():  # warm-up
                time_calls(call, 3)
            for _ in range(args.rounds):
                for key, call in calls.items():
                    times[key] += time_calls(call, args.runs)

    print(f"machine: {machine_description()}; threads {args.threads}; size {args.size}; batch 1; "
          f"{args.rounds} rounds x {args.runs} runs, alternating")
    for name, model in models.items():
        print(f"{name:10s} {count_parameters(model) / 1e6:.3f} M params, {count_macs(model, size) / 1e9:.3f} GMACs per pair")
    for backend in ("torch", "torch-prepared", "onnxruntime"):
        medians = {name: statistics.median(times[(name, backend)]) for name in MODELS}
        for name in MODELS:
            p90 = float(np.percentile(times[(name, backend)], 90))
            print(f"{backend:14s} {name:10s} p50 {medians[name]:7.1f} ms  p90 {p90:7.1f} ms  {1000 / medians[name]:6.1f} pairs/s")
        print(f"{backend:14s} fume / fastscnn time ratio: {medians['fume'] / medians['fastscnn']:.2f}")


if __name__ == "__main__":
    main()
