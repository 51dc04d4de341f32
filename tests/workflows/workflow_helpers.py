"""A tiny generated dataset and configs trained in seconds, for the publish, tune and executor tests."""

from __future__ import annotations

from pathlib import Path

from fume.config import FumeConfig, load_config, resolve_paths, shipped_configs
from fume.data.generate import generate_dataset
from fume.data.pairing import pair_dataset
from fume.data.split import split_dataset

BASE = shipped_configs()["fume_fastscnn"]


def make_dataset(root: Path) -> Path:
    """12 recordings of 64x48 frames, split by recording and paired."""
    generate_dataset(root, n_originals=12, augmentations=0, size=(64, 48), class_mix=(1, 1, 1), seed=0)
    split_dataset(root, seed=0)
    pair_dataset(root, seed=0)
    return root


def overrides(root: Path, *extra: str) -> list[str]:
    """The seed's recipe cut to one epoch of a few steps at 64x64, quiet, no workers."""
    return [
        f"data.dataset_root={root}", "data.image_size=[64,64]", "data.num_workers=0", "data.pin_memory=false",
        "data.validate_before_training=false", "training.batch_size=4", "training.num_epochs=1", "validation.batch_size=8",
        "testing.batch_size=8", "training.early_stopping.enabled=false", "training.checkpoint.every_n_epochs=0",
        "training.checkpoint.monitor=joint_score", "logging.tensorboard=false", "logging.progress_bar=false",
        "logging.metrics_table=false", "logging.log_every_n_steps=1", "trainer.accelerator=cpu", "trainer.devices=1", *extra,
    ]


def tiny_config(root: Path, *extra: str) -> FumeConfig:
    return resolve_paths(load_config(BASE, overrides(root, *extra)))
