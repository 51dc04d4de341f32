"""Fixtures for the inference tests: one tiny generated dataset (frames of 100x75, so the
predictor's resizing is exercised), a checkpoint of an untrained FUME at 128x96 and its ONNX export."""

from __future__ import annotations

from pathlib import Path

import pytest
from inference_helpers import make_checkpoint, make_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only: copy it to modify it."""
    return make_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def checkpoint(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("run") / "checkpoints" / "best.ckpt", dataset)


@pytest.fixture(scope="session")
def onnx_export(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    from fume.workflows.export import export_checkpoint

    return export_checkpoint(checkpoint, tmp_path_factory.mktemp("export") / "fume.onnx")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """PyTorch on one thread in these tests: on a shared 2-core machine two OpenMP threads that
    wait for each other made a 128x96 forward pass take seconds instead of milliseconds."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
