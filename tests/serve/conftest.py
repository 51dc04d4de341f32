"""Fixtures for the service tests: an untrained FUME exported to ONNX at 64x64 (the service runs
ONNX models, as on a farm PC), a short generated pair of videos and a Service on a temporary
database with sources driven step by step by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

MODEL_SIZE = (64, 64)
FRAME_SIZE = (96, 72)
FPS = 10.0
N_FRAMES = 10


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from fume.config import FumeConfig
    from fume.inference.onnx import export_fp32
    from fume.models.registry import create_model

    torch.manual_seed(0)
    config = FumeConfig(data={"image_size": list(MODEL_SIZE)})
    model = create_model("fume").eval()
    # Untrained batch-norm statistics give every frame the same class probabilities; these make
    # them vary from frame to frame (so smoothing and alerts have something to work on).
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.05, 0.2)
    path = tmp_path_factory.mktemp("model") / "fume.onnx"
    export_fp32(model, config, path, MODEL_SIZE)
    return path


@pytest.fixture(scope="session")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """co2.mp4, ch4.mp4 (and co2/, ch4/ frame folders) of N_FRAMES frames at FPS."""
    from fume.data.sequence import generate_sequence

    out = tmp_path_factory.mktemp("sequence")
    generate_sequence(out, n_frames=N_FRAMES, size=FRAME_SIZE, fps=FPS, ph=[6.5, 5.3], seed=3)
    return out


@pytest.fixture(scope="session")
def predictor(onnx_model: Path):
    from fume.inference.predictor import Predictor

    return Predictor.from_onnx(onnx_model, threads=1)


@pytest.fixture()
def make_service(predictor, tmp_path: Path):
    """make_service(specs=[], **ServeConfig options) -> a Service on tmp_path/history.sqlite whose
    sources are not started (tests call source.step(now)); stopped at the end."""
    from fume.serve.service import ServeConfig, Service

    made = []

    def make(specs=(), db: Path | None = None, **options):
        service = Service(predictor, db or tmp_path / "history.sqlite", list(specs), ServeConfig(**options))
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


@pytest.fixture()
def client(make_service):
    """A TestClient of an app without token or sources."""
    from fastapi.testclient import TestClient

    from fume.serve.app import create_app

    with TestClient(create_app(make_service())) as test_client:
        yield test_client


class ServerProcess:
    """`fume serve` in a subprocess on a free port of 127.0.0.1, ready once /health answers."""

    def __init__(self, args: list[str], log: Path, ready_s: float = 180.0) -> None:
        import os
        import socket
        import subprocess
        import sys
        import time

        import httpx

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("FUME_TOKEN", None)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from fume.cli import main; main()", "serve", "--port", str(self.port), "--threads", "1", *args],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + ready_s
        while True:  # polls the server's own readiness answer, with a generous deadline
            if self.process.poll() is not None:
                raise AssertionError(f"fume serve exited with {self.process.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"fume serve did not answer within {ready_s} s: {log.read_text()}")
            time.sleep(0.2)

    def wait_for(self, condition, what: str, timeout_s: float = 180.0, **request):
        """Poll GET requests until condition(response json) holds (generous deadline)."""
        import time

        import httpx

        deadline = time.monotonic() + timeout_s
        while True:
            data = httpx.get(**request, timeout=10).json()
            if condition(data):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {timeout_s} s; last answer {data}; log: {self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except Exception:
                self.process.kill()
                self.process.wait(30)


@pytest.fixture()
def serve_process():
    started: list[ServerProcess] = []

    def start(args: list[str], log: Path) -> ServerProcess:
        server = ServerProcess(args, log)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
