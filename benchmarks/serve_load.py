"""`fume serve` under load, against a server on 127.0.0.1 started here:

1. POST /api/predict with a 640x480 CO2 + CH4 pair (PNG), over keep-alive connections, for a
   bounded number of requests: pairs/s and latency p50/p95, beside `fume benchmark`'s ONNX Runtime
   figure for the same ONNX file (measured first, in this process, with the server not running).
   Goal on a quiet 2-core machine: >= 20 pairs/s and p95 <= 150 ms.
2. Live processing (--live-seconds, 0 to skip): a looped pair of 640x480 30 fps videos as a source
   for that long: pairs processed per second, frames dropped, and the lag behind real time
   (each stored pair's lag_s: how long after its frame was due it was processed).

    .venv/bin/python benchmarks/serve_load.py [--onnx FILE] [--requests 200] [--clients 1] [--live-seconds 60] [--threads N]

Without --onnx an untrained FUME is exported at 640x480 (speed does not depend on the weights).
Prints the machine, its load average before and after (the machine may be shared with other
work: figures on a loaded machine are lower than on a quiet one) and the figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from fume.machine import machine_description

GOAL_PAIRS_PER_S = 20.0
GOAL_P95_MS = 150.0
SIZE = (640, 480)


def export_untrained(path: Path) -> Path:
    from fume.config import load_config
    from fume.inference.onnx import export_fp32
    from fume.models import create_model

    config = load_config(None, [f"data.image_size=[{SIZE[0]},{SIZE[1]}]"])
    export_fp32(create_model("fume").eval(), config, path, SIZE)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: list[str], log: Path, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-c", "from fume.cli import main; main()", "serve", "--port", str(port), *args]
    if threads:
        command += ["--threads", str(threads)]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"fume serve exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    sys.exit("fume serve did not start within 300 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def load_test(url: str, files: dict[str, bytes], requests: int, clients: int) -> tuple[list[float], float]:
    """`requests` POSTs shared by `clients` threads, each with its own keep-alive connection."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    ready = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:  # one connection, kept alive
            for _ in range(3):  # warm-up, not timed
                http.post("/api/predict", files={g: (f"{g}.png", b, "image/png") for g, b in files.items()}).raise_for_status()
            ready.wait()
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                start = time.perf_counter()
                response = http.post("/api/predict", files={g: (f"{g}.png", b, "image/png") for g, b in files.items()})
                elapsed = time.perf_counter() - start
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait()  # every client has warmed up
    began = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, help="ONNX file to serve (default: an untrained FUME exported at 640x480)")
    parser.add_argument("--requests", type=int, default=200, help="timed POST /api/predict requests")
    parser.add_argument("--clients", type=int, default=1, help="concurrent keep-alive clients")
    parser.add_argument("--live-seconds", type=float, default=60.0, help="seconds of live processing of two 30 fps videos (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="the model's CPU threads (default: all cores)")
    args = parser.parse_args()

    from fume.data.sequence import generate_sequence
    from fume.inference.benchmark import run_benchmark

    with tempfile.TemporaryDirectory(prefix="fume-serve-load-") as tmp:
        tmp = Path(tmp)
        onnx = args.onnx or export_untrained(tmp / "fume_640x480.onnx")
        frames = 30 * 10
        print(f"... rendering a {frames}-frame 640x480 30 fps pair of recordings", flush=True)
        seq = tmp / "seq"
        generate_sequence(seq, n_frames=frames, size=SIZE, fps=30.0, ph=[6.5, 5.3], seed=0)
        files = {gas: (seq / gas / "frame_00005.png").read_bytes() for gas in ("co2", "ch4")}

        print(f"machine: {machine_description()} (shared with other work); load average before {os.getloadavg()}")
        bench = run_benchmark(onnx=onnx, size=SIZE, batches=[1], backends=["onnxruntime"], threads=args.threads, runs=30, warmup=5)
        row = bench["results"][0]
        print(f"fume benchmark --onnx {onnx.name} --backend onnxruntime --size 640x480: p50 {row['p50_ms']:.1f} ms, "
              f"{row['pairs_per_s']:.1f} pairs/s (the model alone, in-process)")

        process, url = start_server(["--model", str(onnx), "--db", str(tmp / "load.sqlite")], tmp / "serve.log", args.threads)
        try:
            latencies, wall = load_test(url, files, args.requests, args.clients)
        finally:
            stop(process)
        ms = np.asarray(latencies) * 1000
        rate = len(latencies) / wall
        p95 = float(np.percentile(ms, 95))
        print(f"POST /api/predict, 640x480 PNG pair, {args.clients} keep-alive client(s), {len(latencies)} requests: "
              f"{rate:.1f} pairs/s, latency p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms "
              f"(goal >= {GOAL_PAIRS_PER_S:.0f} pairs/s and p95 <= {GOAL_P95_MS:.0f} ms: "
              f"{'met' if rate >= GOAL_PAIRS_PER_S and p95 <= GOAL_P95_MS else 'not met'})")

        if args.live_seconds > 0:
            db = tmp / "live.sqlite"
            source = f"pen=co2:{seq / 'co2.mp4'},ch4:{seq / 'ch4.mp4'},loop"
            process, url = start_server(["--model", str(onnx), "--db", str(db), "--source", source], tmp / "live.log", args.threads)
            try:
                http = httpx.Client(base_url=url, timeout=30)
                # Counted from the first stored pair, so start-up (opening the videos) is left out.
                while not http.get("/api/sources").json()["sources"][0]["processed"]:
                    time.sleep(0.2)
                first = http.get("/api/sources").json()["sources"][0]
                time.sleep(args.live_seconds)  # the measurement window itself
                last = http.get("/api/sources").json()["sources"][0]
                rows = http.get("/api/history", params={"since": first["latest"]["time"]}).json()["rows"]
                lags = [r["lag_s"] for r in rows if r["id"] > first["latest"]["id"]]  # the first pair's lag holds the start-up
            finally:
                stop(process)
            processed = last["processed"] - first["processed"]
            dropped = last["dropped"] - first["dropped"]
            print(f"live, a looped pair of 640x480 30 fps videos for {args.live_seconds:g} s: {processed / args.live_seconds:.1f} pairs/s processed "
                  f"({processed} pairs; {dropped} frames dropped over both gases); lag behind real time: median {1000 * statistics.median(lags):.0f} ms, "
                  f"p95 {1000 * float(np.percentile(lags, 95)):.0f} ms, max {1000 * max(lags):.0f} ms; state {last['state']}")
        print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
