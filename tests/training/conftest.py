"""Tiny generated data and one short training run, shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from fume.config import FumeConfig, load_config, resolve_paths, shipped_configs
from fume.data.generate import generate_dataset
from fume.data.pairing import pair_dataset
from fume.data.split import split_dataset

CONFIG = shipped_configs()["fume_fastscnn"]


def make_tiny_dataset(root: Path) -> Path:
    """18 recordings x 2 frames at 128x96, split by recording and paired: a few pairs per split."""
    generate_dataset(root, n_originals=18, augmentations=1, size=(128, 96), class_mix=(0.4, 0.2, 0.4), seed=0, difficulty="easy")
    split_dataset(root, seed=0)
    pair_dataset(root, seed=0)
    return root


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """The seed's config cut down to seconds: 64x64 inputs, batch 4, no workers, quiet."""
    return [
        f"data.dataset_root={root}", "data.image_size=[64,64]", "data.num_workers=0", "data.pin_memory=false",
        "training.batch_size=4", "training.num_epochs=2", "validation.batch_size=8",
        "logging.progress_bar=false", "logging.metrics_table=false", "logging.log_every_n_steps=1", *extra,
    ]


def tiny_config(root: Path, *extra: str) -> FumeConfig:
    return resolve_paths(load_config(CONFIG, tiny_overrides(root, *extra)))


@pytest.fixture
def make_config():
    """tiny_config(root, *overrides) -> FumeConfig, for tests that change a setting."""
    return tiny_config


@pytest.fixture
def overrides_for():
    """tiny_overrides(root, *overrides) -> the dotted overrides, for command lines."""
    return tiny_overrides


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def trained_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """A two-epoch FUME run on the tiny data (TrainResult); tests must not modify its folder."""
    from fume.workflows.train import train

    # No augmentation or modality dropout: two epochs of a few steps must show the loss falling, not their noise.
    config = tiny_config(tiny_dataset, "data.augment=false", "data.modality_dropout=0.0")
    return train(config, run_dir=tmp_path_factory.mktemp("runs") / "two_epochs")
