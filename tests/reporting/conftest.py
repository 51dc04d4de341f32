"""A tiny generated dataset (grouped split, paired) shared by the reporting tests; read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from fume.data.generate import generate_dataset
from fume.data.pairing import pair_dataset
from fume.data.split import split_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reporting-data")
    generate_dataset(root, n_originals=12, augmentations=1, size=(64, 64), seed=0, class_mix=(1, 1, 1))
    split_dataset(root, seed=0)
    pair_dataset(root, seed=0)
    return root
