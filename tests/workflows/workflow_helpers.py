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


def write_grid(path: Path, variants: list[dict], name: str = "g") -> Path:
    """A grid file on the shipped base config (fume.reporting.grid)."""
    import yaml

    path.write_text(yaml.safe_dump({"name": name, "kind": "ablation", "base": str(BASE), "reference": variants[0]["name"], "variants": variants}))
    return path


def barrier_job(spec, complexity, threads, barrier: str, parties: int = 2, kill: str | None = None):
    """fume.workflows.executors.run_job in a submitit process, with training made to wait until
    `parties` runs have started training (files in `barrier`), so those runs overlap whatever the
    machine's speed; the run of variant `kill` kills its own process after training (a job killed
    before it could finish). Pickled by value (cloudpickle), so the job process needs no test files."""
    import os
    import signal
    import time
    from pathlib import Path

    import fume.workflows.experiments as experiments
    from fume.workflows.executors import run_job

    real = experiments.train_and_evaluate

    def waiting(spec, run_dir):
        folder = Path(barrier)
        (folder / spec.variant.name).touch()
        deadline = time.monotonic() + 600
        while len(list(folder.iterdir())) < parties:
            if time.monotonic() > deadline:
                raise RuntimeError(f"barrier: {parties} runs never trained at the same time")
            time.sleep(0.05)
        result = real(spec, run_dir)
        if spec.variant.name == kill:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    experiments.train_and_evaluate = waiting
    return run_job(spec, complexity, threads)
