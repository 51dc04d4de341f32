"""The LightningDataModule: paired tables -> PairedDataset -> loaders (weighted sampler, workers)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from fume.config import FumeConfig
from fume.errors import DataError


def make_dataset(config: FumeConfig, split: str, train: bool = False):
    """PairedDataset for one split; augmentation and modality dropout only when `train`."""
    from fume.data.dataset import PairedDataset
    from fume.data.transforms import build_augmentation

    table = config.data.paired_table(split)
    if not table.is_file():
        root = config.data.dataset_root
        pair = f"fume pair {root}" + (f" --out {config.data.paired_dir}" if config.data.paired_dir is not None else "")
        raise DataError(
            f"paired table for split {split!r} not found: {table}. Create it with `{pair}` (after `fume split {root}` "
            f"if the split tables are missing too); data.paired_dir / data.dataset_root say where it is looked for"
        )
    augment = build_augmentation(config.data.augmentation) if (train and config.data.augment) else False
    return PairedDataset(
        table,
        config.data.dataset_root,
        image_size=tuple(config.data.image_size),
        augment=augment,
        modality_dropout=config.data.modality_dropout if train else 0.0,
        seed=config.experiment.seed if train else None,
        label_config=config.data.labels,
        max_image_pixels=config.data.max_image_pixels,
        allow_outside_root=config.data.allow_outside_root,
        frame_window=config.data.frame_window,
    )


class FumeDataModule(L.LightningDataModule):
    def __init__(self, config: FumeConfig) -> None:
        super().__init__()
        self.config = config
        self.train_set = None
        self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = make_dataset(self.config, "train", train=True)
            if len(self.train_set) == 0:
                raise DataError(f"{self.config.data.paired_table('train')} has no rows to train on")
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = make_dataset(self.config, "val")
            if len(self.val_set) == 0:
                raise DataError(f"{self.config.data.paired_table('val')} has no rows to validate on")

    def _loader(self, dataset, batch_size: int, **kwargs: Any) -> DataLoader:
        workers = self.config.data.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.config.data.pin_memory and torch.cuda.is_available(),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        if self.config.weighted_sampling:
            # Inverse class frequency: each class is drawn about equally often. Under DDP Lightning
            # wraps this sampler so every process draws its own share.
            weights = self.train_set.sample_weights()
            generator = torch.Generator().manual_seed(self.config.experiment.seed)
            sampler = WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)
            return self._loader(self.train_set, self.config.training.batch_size, sampler=sampler, drop_last=len(self.train_set) > self.config.training.batch_size)
        return self._loader(self.train_set, self.config.training.batch_size, shuffle=True, drop_last=len(self.train_set) > self.config.training.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.config.validation.batch_size, shuffle=False)
