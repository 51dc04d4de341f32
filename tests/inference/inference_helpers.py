"""Helpers for the inference tests: a tiny generated dataset and checkpoints of untrained models."""

from __future__ import annotations

from pathlib import Path

import torch

from fume.config import FumeConfig
from fume.data.generate import generate_dataset
from fume.data.pairing import pair_dataset
from fume.data.split import split_dataset
from fume.training.module import FumeTask

MODEL_SIZE = (128, 96)  # (W, H): the size the test models run at
FRAME_SIZE = (100, 75)  # the generated frames: another size, so resizing is exercised


def make_dataset(root: Path, n_originals: int = 18, size: tuple[int, int] = FRAME_SIZE) -> Path:
    """Generated frames, split by recording and paired: paired_{train,val,test}_annotations.csv in root.
    The easy look: a model's masks take structure within a few steps."""
    generate_dataset(root, n_originals=n_originals, augmentations=0, size=size, seed=1, class_mix=(1, 1, 1), co2_fraction=0.5,
                     difficulty="easy")
    split_dataset(root, ratios=(0.4, 0.3, 0.3), seed=0)
    pair_dataset(root)
    return root


def make_checkpoint(
    path: Path, dataset_root: Path, model: str = "fume", image_size: tuple[int, int] = MODEL_SIZE, fit_steps: int = 0, seed: int = 0, **options
) -> Path:
    """A Lightning-format checkpoint (state_dict + hyper_parameters["config"]), as `fume train`
    writes it. With fit_steps, the model first takes that many Adam steps on the train pairs, so
    its masks have structure; without, the batch-norm statistics are still measured on the train
    frames, which is enough to give the untrained model's masks and classes some variety."""
    torch.manual_seed(seed)
    config = FumeConfig(
        model={"name": model, **options},
        data={"dataset_root": str(dataset_root), "image_size": list(image_size), "num_workers": 0},
    )
    task = FumeTask(config)
    if fit_steps:
        fit(task, config, fit_steps)
    calibrate_batch_norm(task, config)
    task.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": {"config": config.to_dict()}, "epoch": 0}, path)
    return path


def _train_loader(config: FumeConfig, batch_size: int = 4):
    from torch.utils.data import DataLoader

    from fume.training.datamodule import make_dataset

    return DataLoader(make_dataset(config, "train"), batch_size=batch_size, shuffle=False)


def calibrate_batch_norm(task: FumeTask, config: FumeConfig, batches: int = 2) -> None:
    """Running BN statistics = the plain average over a few train batches (no weights change)."""
    norms = [m for m in task.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    task.train()
    with torch.no_grad():
        for i, batch in enumerate(_train_loader(config)):
            if i == batches:
                break
            task(batch)
    for m in norms:
        m.momentum = 0.1
        # Channels that are nearly constant on these frames would blow up on any other input.
        m.running_var.clamp_(min=0.05)


def fit(task: FumeTask, config: FumeConfig, steps: int) -> None:
    loader = _train_loader(config)
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-2)
    task.train()
    done = 0
    while done < steps:
        for batch in loader:
            loss = task.criterion(task(batch), batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                return
