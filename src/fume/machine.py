"""What a measured figure ran on, and how it is timed: one description of the machine and one
latency loop for model cards, benchmarks and experiment records."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU, cores, platform, Python, load, and the versions of torch / ONNX Runtime where they are
    already imported (asking must not pull torch into the runtime)."""
    info: dict[str, Any] = {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
    }
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), cuda=torch.cuda.is_available())
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    ort = sys.modules.get("onnxruntime")
    if ort is not None:
        info["onnxruntime"] = ort.__version__
    return info


def machine_description() -> str:
    """One line for tables, e.g. 'AMD EPYC 7B13, 2 CPUs'."""
    return f"{cpu_name()}, {os.cpu_count()} CPUs"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (inclusive method; the value itself for a single run)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, int(round(q)) - 1))]


def time_calls(calls: dict[str, Callable[[], Any]], runs: int = 20, warmup: int = 5) -> dict[str, dict[str, Any]]:
    """Latency in ms of each named call: median, 90th percentile and mean of `runs` timed calls
    after `warmup` untimed ones, plus the raw times. Several calls alternate, so a noisy moment of a
    shared machine touches all of them alike."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {
        name: {"p50_ms": statistics.median(t), "p90_ms": percentile(t, 90), "mean_ms": statistics.fmean(t), "runs": runs, "times_ms": t}
        for name, t in times.items()
    }
