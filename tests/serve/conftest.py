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
