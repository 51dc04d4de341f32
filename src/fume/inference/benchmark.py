"""`fume benchmark`: parameters, GMACs, latency (p50 / p90), pairs per second and peak memory of a
model per backend and batch size; optionally beside the plain Fast-SCNN reference, timed in the
same process and alternating call by call, so a machine whose speed drifts affects both alike.

Each (backend, batch) is measured in a fresh worker process (`python -m fume.inference.benchmark`),
so neither memory nor threads of one measurement leak into the next; ONNX Runtime sessions run
with thread spinning off (two spinning sessions in one process slow each other down).

The reference is Fast-SCNN run as it would be deployed without FUME: two passes per pair, one per
gas, each a batch of single-gas frames.

Backends: "torch" is eager PyTorch under inference_mode with batch norm folded into the
convolutions and channels_last tensors (fume.models.prepare.prepare_for_inference); "torch-compile" is the same
through torch.compile (its compile time, about a minute on 2 cores, is not timed); "onnxruntime"
and "onnxruntime-int8" run the exported fp32 and statically quantized files.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fume.errors import ConfigError, FumeError
from fume.machine import machine_info, percentile, time_calls

BACKENDS = ("torch", "torch-compile", "onnxruntime", "onnxruntime-int8")
REFERENCES = ("fastscnn",)
CALIBRATION_FRAMES = 8  # synthetic pairs used to calibrate int8 when no table is given
RESULT_FIELDS = (
    "backend", "batch", "size", "threads", "runs", "p50_ms", "p90_ms", "mean_ms", "pairs_per_s",
    "peak_memory_mb", "model_memory_mb",
)
# With --compare: reference {p50_ms, p90_ms, pairs_per_s}, speed_ratio (reference p50 / FUME p50) and
# time_ratio (median over alternating calls of FUME time / reference time). For onnxruntime-int8:
# fp32 {p50_ms, pairs_per_s} and speedup_over_fp32 (median of fp32 time / int8 time, alternating).


# ---------------------------------------------------------------- models to time


def one_gas_fastscnn():
    """Fast-SCNN with one gas per pass: forward(co2, ch4, modality_mask) segments `co2` only."""
    import torch

    from fume.models import create_model

    class OneGasFastSCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = create_model("fastscnn")

        def forward(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
            low, high = self.net.encoder(co2)
            logits = self.net.decoder(low, self.net.context(high, low.shape[-2:]), co2.shape[-2:])
            return {"co2_seg_logits": logits}

    return OneGasFastSCNN().eval()


def load_torch_model(source: dict[str, Any]):
    """A model from {"model": name} (untrained weights: speed does not depend on them),
    {"checkpoint": path} or {"reference": "fastscnn"}."""
    if "onnx" in source:
        raise ConfigError(f"{source['onnx']} is an ONNX file; the torch backends need a model or a checkpoint")
    if "checkpoint" in source:
        from fume.models.checkpoint import load_model_from_checkpoint

        return load_model_from_checkpoint(source["checkpoint"])[0]
    if source.get("reference") == "fastscnn":
        return one_gas_fastscnn()
    from fume.models import create_model

    return create_model(source["model"]).eval()


def synthetic_pairs(size: tuple[int, int], n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Realistic frames from the synthetic generator, for int8 calibration when no table is given."""
    from fume.data.physics import load_physics
    from fume.data.render import Recording, render_recording

    physics = load_physics()
    phs = [6.5, 5.9, 5.3]
    pairs = []
    for i in range(n):
        frames = []
        for g, gas in enumerate(("co2", "ch4")):
            rec = Recording(i, f"calib{i}", gas, phs[i % len(phs)], i % len(phs))
            frame, _, _ = render_recording(rec, size, physics, np.random.default_rng([seed, i, g]))
            frames.append(frame.astype(np.float32)[None, None] / 255.0)
        pairs.append({"co2": frames[0], "ch4": frames[1], "modality_mask": np.ones((1, 2), np.float32)})
    return pairs


def prepare_onnx(model: Any, config: Any, size: tuple[int, int], work: Path, name: str, int8: bool, calibration: list[dict[str, np.ndarray]]) -> dict[str, str]:
    """fp32 (and int8) ONNX files of `model` at `size` in `work`."""
    import onnx

    from fume.inference.onnx import export_fp32, export_onnx
    from fume.inference.quantize import ListReader, quantize_int8

    fp32 = work / f"{name}.onnx"
    if config is not None:
        export_fp32(model, config, fp32, size)
    else:
        export_onnx(model, fp32, size=size)
    files = {"onnxruntime": str(fp32)}
    if int8:
        plain = work / f"{name}.for_int8.onnx"  # without the fp32-only gate spreads (onnx.export_onnx)
        export_onnx(model, plain, size=size, for_int8=True)
        names = [i.name for i in onnx.load(str(plain), load_external_data=False).graph.input]
        out = work / f"{name}.int8.onnx"
        quantize_int8(plain, out, ListReader(calibration, names), work)
        files["onnxruntime-int8"] = str(out)
    return files


# ---------------------------------------------------------------- the worker (one process per measurement)


def _runner(kind: str, source: dict[str, Any], threads: int | None) -> Callable[[dict[str, np.ndarray]], Any]:
    if kind.startswith("onnxruntime"):
        from fume.inference.backends import OnnxBackend

        backend = OnnxBackend(source["onnx"], threads=threads, check_io="reference" not in source)
        names = [i.name for i in backend.session.get_inputs()]
        return lambda feeds: backend.session.run(None, {k: feeds[k] for k in names})
    import torch

    from fume.models.prepare import prepare_for_inference

    model = prepare_for_inference(load_torch_model(source))
    if kind == "torch-compile":
        model = torch.compile(model)
    cl = torch.channels_last

    def run(feeds: dict[str, np.ndarray]) -> Any:
        with torch.inference_mode():
            co2, ch4 = (torch.from_numpy(feeds[k]).contiguous(memory_format=cl) for k in ("co2", "ch4"))
            return model(co2, ch4, torch.from_numpy(feeds["modality_mask"]))

    return run


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Time spec["backend"] on random frames; with spec["reference"], alternate with the reference."""
    threads = spec.get("threads")
    if threads is not None and not spec["backend"].startswith("onnxruntime"):
        import torch

        torch.set_num_threads(int(threads))
    baseline = _memory_mb("VmRSS")
    width, height = spec["size"]
    batch = spec["batch"]
    rng = np.random.default_rng(0)
    feeds = {
        "co2": rng.random((batch, 1, height, width), dtype=np.float32),
        "ch4": rng.random((batch, 1, height, width), dtype=np.float32),
        "modality_mask": np.ones((batch, 2), np.float32),
    }
    main = _runner(spec["backend"], spec["source"], threads)
    reference = _runner(spec["backend"], spec["reference"], threads) if spec.get("reference") else None
    ref_feeds = [{**feeds, "co2": feeds[gas]} for gas in ("co2", "ch4")]  # one pass per gas

    def run_reference() -> None:
        for f in ref_feeds:
            reference(f)

    calls = {"main": lambda: main(feeds)}
    if reference is not None:
        calls["reference"] = run_reference
    if spec.get("fp32"):  # int8 timed beside the fp32 file it was quantized from
        fp32 = _runner("onnxruntime", spec["fp32"], threads)
        calls["fp32"] = lambda: fp32(feeds)
    timed = time_calls(calls, runs=spec["runs"], warmup=spec["warmup"])
    peak = _memory_mb("VmHWM")
    t = timed["main"]
    result = {
        "backend": spec["backend"], "batch": batch, "size": f"{width}x{height}", "threads": _threads_used(spec),
        "runs": spec["runs"], "p50_ms": t["p50_ms"], "p90_ms": t["p90_ms"], "mean_ms": t["mean_ms"],
        "pairs_per_s": batch * 1000.0 / t["p50_ms"], "peak_memory_mb": peak, "model_memory_mb": peak - baseline,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if reference is not None:
        r = timed["reference"]
        result["reference"] = {
            "model": spec["reference"].get("reference", "fastscnn"), "passes_per_pair": 2, "p50_ms": r["p50_ms"],
            "p90_ms": r["p90_ms"], "pairs_per_s": batch * 1000.0 / r["p50_ms"],
        }
        # Both medians come from the same minutes of machine time, so their ratio is steadier than either.
        result["speed_ratio"] = r["p50_ms"] / t["p50_ms"]
        # FUME's time / Fast-SCNN's, call by call (each pair of calls ran back to back), median.
        result["time_ratio"] = paired_ratio(t["times_ms"], r["times_ms"])
    if "fp32" in timed:
        f = timed["fp32"]
        result["fp32"] = {"p50_ms": f["p50_ms"], "pairs_per_s": batch * 1000.0 / f["p50_ms"]}
        result["speedup_over_fp32"] = paired_ratio(f["times_ms"], t["times_ms"])
    if spec["backend"] == "torch" and spec.get("cuda"):
        result["cuda"] = measure_cuda(spec)
    return result


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median of the call-by-call ratios of two alternating timings."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def _memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MB. Not getrusage's ru_maxrss: on Linux that
    survives fork + exec, so a worker would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # other systems: kB on Linux-likes


def _threads_used(spec: dict[str, Any]) -> int:
    if spec.get("threads"):
        return int(spec["threads"])
    if spec["backend"].startswith("onnxruntime"):
        return os.cpu_count() or 1  # ONNX Runtime's default: one thread per core
    import torch

    return torch.get_num_threads()


def measure_cuda(spec: dict[str, Any]) -> dict[str, Any]:
    """GPU latency with CUDA events, autocast (bf16 where supported, else fp16) and channels_last."""
    import torch

    model = load_torch_model(spec["source"]).cuda().to(memory_format=torch.channels_last)
    width, height = spec["size"]
    batch = spec["batch"]
    x = [torch.rand(batch, 1, height, width, device="cuda").contiguous(memory_format=torch.channels_last) for _ in range(2)]
    mask = torch.ones(batch, 2, device="cuda")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    times = []
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
        for _ in range(spec["warmup"]):
            model(x[0], x[1], mask)
        for _ in range(spec["runs"]):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x[0], x[1], mask)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    p50 = statistics.median(times)
    return {
        "device": torch.cuda.get_device_name(), "amp": str(dtype).replace("torch.", ""), "channels_last": True,
        "p50_ms": p50, "p90_ms": percentile(times, 90), "pairs_per_s": batch * 1000.0 / p50,
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
    }


def worker_env() -> dict[str, str]:
    """The worker's environment: OpenMP threads that sleep instead of spinning while they wait
    (OMP_WAIT_POLICY=PASSIVE) unless the caller chose otherwise. On a shared or busy CPU spinning
    PyTorch threads were measured 4-10x slower at 640x480 (PASSIVE 218 ms vs default 949 ms)."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_worker(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """measure(spec) in a fresh Python process."""
    cmd = [sys.executable, "-m", "fume.inference.benchmark", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=worker_env())
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise FumeError(f"benchmark of {spec['backend']} (batch {spec['batch']}) failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the command


def parse_list(text: str, what: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty")
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise ConfigError(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)}")
    return items


def run_benchmark(
    model: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    onnx: str | os.PathLike | None = None,
    size: tuple[int, int] | None = None,
    batches: list[int] = (1,),
    backends: list[str] = ("torch", "onnxruntime"),
    threads: int | None = None,
    runs: int = 30,
    warmup: int = 5,
    compare: str | None = None,
    calibration: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure and return {"machine", "model", "results": [...]}; see RESULT_FIELDS for each result."""
    import torch

    from fume.models.complexity import count_macs, count_parameters

    if sum(x is not None for x in (model, checkpoint, onnx)) > 1:
        raise ConfigError("give one of --model, --checkpoint, --onnx")
    if model is None and checkpoint is None and onnx is None:
        model = "fume"
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise ConfigError(f"unknown backend(s) {', '.join(bad)}; choose from {', '.join(BACKENDS)}")
    if compare is not None and compare not in REFERENCES:
        raise ConfigError(f"--compare {compare!r}: the reference can be {', '.join(REFERENCES)}")
    if runs < 1 or warmup < 0 or any(b < 1 for b in batches):
        raise ConfigError("--runs and every --batch must be >= 1, --warmup >= 0")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if onnx is not None and any(not b.startswith("onnxruntime") for b in backends):
        raise ConfigError("with --onnx only the onnxruntime backends can run; pass --backend onnxruntime[,onnxruntime-int8]")

    torch_model, config, info = None, None, {}
    if onnx is not None:
        from fume.inference.backends import OnnxBackend

        file_size = OnnxBackend(onnx).image_size
        if size is not None and tuple(size) != file_size:
            raise ConfigError(f"{onnx} was exported for {file_size[0]}x{file_size[1]} frames, not {size[0]}x{size[1]}; drop --size or re-export")
        size = file_size
        info = {"source": str(onnx), "params": None, "gmacs": None}
    elif checkpoint is not None:
        from fume.models.checkpoint import load_model_from_checkpoint

        torch_model, config = load_model_from_checkpoint(checkpoint)
        info = {"source": str(checkpoint), "name": config.model.name}
    else:
        from fume.models import create_model

        torch_model = create_model(model).eval()
        info = {"source": f"model {model} (untrained weights)", "name": model}
    size = tuple(size or (640, 480))
    if torch_model is not None:
        try:
            macs = count_macs(torch_model, size)
        except ValueError as err:
            raise ConfigError(f"--size {size[0]}x{size[1]}: {err}") from None
        info.update(params=count_parameters(torch_model), gmacs=macs / 1e9)

    source: dict[str, Any] = {"checkpoint": str(checkpoint)} if checkpoint is not None else {"model": model}
    results = []
    with tempfile.TemporaryDirectory(prefix="fume-bench-") as tmp:
        work = Path(tmp)
        files: dict[str, str] = {}
        ref_files: dict[str, str] = {}
        ort_wanted = [b for b in backends if b.startswith("onnxruntime")]
        if ort_wanted:
            int8 = "onnxruntime-int8" in ort_wanted
            calib = _calibration_pairs(calibration, data_root, size, config) if int8 else []
            if progress:
                progress("exporting ONNX" + (" and quantizing int8" if int8 else ""))
            if onnx is not None:
                files["onnxruntime"] = str(onnx)
                if int8:
                    from fume.inference.quantize import ListReader, quantize_int8

                    names = ["co2", "ch4", "modality_mask"]
                    quantize_int8(Path(onnx), work / "model.int8.onnx", ListReader(calib, names), work)
                    files["onnxruntime-int8"] = str(work / "model.int8.onnx")
            else:
                files = prepare_onnx(torch_model, config, size, work, "model", int8, calib)
            if compare:
                ref_files = prepare_onnx(one_gas_fastscnn(), None, size, work, "reference", int8, calib)
        for backend in backends:
            for batch in batches:
                if progress:
                    progress(f"timing {backend}, batch {batch}")
                spec = {
                    "backend": backend, "batch": int(batch), "size": list(size), "threads": threads, "runs": runs,
                    "warmup": warmup, "cuda": backend == "torch" and torch.cuda.is_available(),
                    "source": {"onnx": files[backend]} if backend in files else source,
                }
                if compare:
                    spec["reference"] = {"reference": compare, **({"onnx": ref_files[backend]} if backend in ref_files else {})}
                if backend == "onnxruntime-int8":
                    spec["fp32"] = {"onnx": files["onnxruntime"]}
                results.append(run_worker(spec))
    import onnxruntime  # noqa: F401  (imported so machine_info reports both versions)
    import torch  # noqa: F401

    machine = machine_info()
    return {"machine": machine, "model": info, "size": f"{size[0]}x{size[1]}", "results": results}


def _calibration_pairs(calibration, data_root, size, config) -> list[dict[str, np.ndarray]]:
    if calibration is None:
        return synthetic_pairs(size, CALIBRATION_FRAMES)
    from fume.config import LabelConfig
    from fume.inference.quantize import DEFAULT_CALIBRATION_PAIRS, item_inputs, paired_dataset, pick_evenly

    labels = config.data.labels if config is not None else LabelConfig()
    dataset = paired_dataset(calibration, data_root, size, labels, config.data.frame_window if config is not None else None)
    return [item_inputs(dataset[i]) for i in pick_evenly(len(dataset), DEFAULT_CALIBRATION_PAIRS)]


def format_table(report: dict[str, Any]) -> list[list[str]]:
    """Rows for a printed table: backend, batch, threads, p50, p90, pairs/s, memory, reference pairs/s,
    speed ratio to it, median time ratio to it, int8 speed-up over fp32."""
    rows = []
    for r in report["results"]:
        ref = r.get("reference")
        rows.append([
            r["backend"], str(r["batch"]), str(r["threads"]), f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}", f"{r['pairs_per_s']:.1f}",
            f"{r['peak_memory_mb']:.0f}", f"{ref['pairs_per_s']:.1f}" if ref else "-", f"{r['speed_ratio']:.2f}x" if ref else "-",
            f"{r['time_ratio']:.2f}" if ref else "-", f"{r['speedup_over_fp32']:.2f}x" if "speedup_over_fp32" in r else "-",
        ])
    return rows


if __name__ == "__main__":  # the worker: one measurement, its JSON on the last line of stdout
    print(json.dumps(measure(json.loads(sys.argv[1]))))
