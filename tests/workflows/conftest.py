"""A tiny dataset and one trained run shared by the workflow tests (read-only: copy to modify)."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_helpers import make_dataset, tiny_config


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("workflow-data") / "data")


@pytest.fixture(scope="session")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUN_DIR of a one-epoch FUME run on the tiny data."""
    from fume.workflows.train import train

    return train(tiny_config(tiny_data), run_dir=tmp_path_factory.mktemp("runs") / "one_epoch").run_dir
