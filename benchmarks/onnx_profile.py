"""Where ONNX Runtime spends its time: the per-operator profile of the exported FUME model beside
the plain Fast-SCNN pair (two passes, one per gas), fp32 and optionally int8, one 640x480 pair,
batch 1.

    .venv/bin/python benchmarks/onnx_profile.py [--size 640x480] [--runs 30] [--threads 2] [--int8] [--top 15]
    .venv/bin/python benchmarks/onnx_profile.py --onnx fume.onnx     # a file from `fume export`
    .venv/bin/python benchmarks/onnx_profile.py --modules            # also kernel time per module

Prints, per model, the share of kernel time of each operator type and the slowest nodes (with
--modules also per module of the network: the first two parts of the node names), summed
over `--runs` profiled calls (ONNX Runtime's own profiler: kernel times, not wall time), plus the
machine's load average, since on a shared machine every absolute figure moves with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from fume.contract import parse_size
from fume.inference.backends import session_options
from fume.inference.benchmark import one_gas_fastscnn, prepare_onnx, synthetic_pairs
from fume.machine import machine_description
from fume.models import create_model


def profile(path: str, feeds: list[dict[str, np.ndarray]], runs: int, threads: int, work: Path) -> dict[str, dict[str, float]]:
    """Kernel microseconds per node and per operator type, summed over `runs` calls of every feed."""
    import onnxruntime as ort

    options = session_options(threads, profile_prefix=str(work / Path(path).stem))
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    warmup = 3
    for _ in range(warmup + runs):
        for feed in feeds:
            session.run(None, {k: feed[k] for k in names})
    events = json.loads(Path(session.end_profiling()).read_text())
    # Drop the warm-up calls (first-run allocations): node events before the end of the last one.
    ends = sorted(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
    start = ends[warmup * len(feeds) - 1]
    by_node: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        op = e["args"].get("op_name", "?")
        by_node[f"{e['name'][: -len('_kernel_time')]} ({op})"] += e["dur"] / runs
        by_op[op] += e["dur"] / runs
    return {"node": dict(by_node), "op": dict(by_op)}


def per_module(by_node: dict[str, float]) -> dict[str, dict[str, float]]:
    """Kernel time per module and operator type: a module is the first two parts of a node's path,
    layer indices dropped (encoder/global_features, co2/head); nodes outside any module: (graph)."""
    modules: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for node, us in by_node.items():
        name, op = node.rsplit(" (", 1)
        path = [part for part in name.split("/") if part][:-1]  # the last part names the node itself
        module = "/".join(re.sub(r"(\.\d+)+(_\d+)?$", "", part) for part in path[:2]) or "(graph)"
        modules[module][op.rstrip(")")] += us
    return modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--int8", action="store_true", help="also quantize both models and profile the int8 files")
    parser.add_argument("--onnx", type=Path, help="profile this FUME file instead of an untrained export")
    parser.add_argument("--modules", action="store_true", help="also print kernel time per module (e.g. encoder/global_features, co2/head)")
    args = parser.parse_args()
    size = parse_size(args.size)
    width, height = size
    rng = np.random.default_rng(0)
    pair = {g: rng.random((1, 1, height, width), dtype=np.float32) for g in ("co2", "ch4")}
    pair["modality_mask"] = np.ones((1, 2), np.float32)
    calib = synthetic_pairs(size, 4) if args.int8 else []
    with tempfile.TemporaryDirectory(prefix="fume-profile-") as tmp:
        work = Path(tmp)
        files = {}
        if args.onnx:
            files["fume"] = {"onnxruntime": str(args.onnx)}
        else:
            files["fume"] = prepare_onnx(create_model("fume").eval(), None, size, work, "fume", args.int8, calib)
        files["fastscnn x2"] = prepare_onnx(one_gas_fastscnn(), None, size, work, "fastscnn", args.int8, calib)
        feeds = {"fume": [pair], "fastscnn x2": [{**pair, "co2": pair[g]} for g in ("co2", "ch4")]}
        print(f"machine: {machine_description()}; load average {os.getloadavg()}; threads {args.threads}; "
              f"{args.size}, batch 1; {args.runs} profiled calls")
        for kind in ("onnxruntime", "onnxruntime-int8") if args.int8 else ("onnxruntime",):
            for name in files:
                if kind not in files[name]:
                    continue
                prof = profile(files[name][kind], feeds[name], args.runs, args.threads, work)
                total = sum(prof["op"].values())
                print(f"\n== {name} {kind}: {total / 1000:.1f} ms of kernel time per pair")
                for op, us in sorted(prof["op"].items(), key=lambda kv: -kv[1]):
                    print(f"  {op:<28}{us / 1000:8.2f} ms {100 * us / total:6.1f} %")
                if args.modules:
                    print("  -- per module (operator types in brackets)")
                    for module, ops in sorted(per_module(prof["node"]).items(), key=lambda kv: -sum(kv[1].values())):
                        us = sum(ops.values())
                        top = ", ".join(f"{op} {t / 1000:.2f}" for op, t in sorted(ops.items(), key=lambda kv: -kv[1])[:4])
                        print(f"  {module:<28}{us / 1000:8.2f} ms {100 * us / total:6.1f} %  [{top}]")
                print(f"  -- slowest {args.top} nodes")
                for node, us in sorted(prof["node"].items(), key=lambda kv: -kv[1])[: args.top]:
                    print(f"  {node[:70]:<72}{us / 1000:7.2f} ms {100 * us / total:5.1f} %")


if __name__ == "__main__":
    main()
