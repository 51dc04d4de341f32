"""Fixtures for the data tests: a hand-made dataset in the real layout and a tiny generated one."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import make_real_layout

from fume.data.generate import generate_dataset


@pytest.fixture
def real_layout(tmp_path: Path) -> Path:
    recordings = []
    for ph in (6.5, 6.2, 5.9, 5.0):
        for i in range(3):
            recordings.append((f"ph{ph}_co2_{i}", "co2", ph))
            recordings.append((f"ph{ph}_ch4_{i}", "ch4", ph))
    make_real_layout(tmp_path, recordings)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 recordings x 3 frames at 64x48, equal class mix. Read-only: copy it to modify it."""
    root = tmp_path_factory.mktemp("generated")
    generate_dataset(root, n_originals=40, augmentations=2, size=(64, 48), seed=3, class_mix=(1, 1, 1))
    return root
