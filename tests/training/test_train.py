"""fume train on tiny generated data: losses, files, resume, early stopping, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch.utils.data import WeightedRandomSampler

from fume.config import load_config
from fume.errors import ConfigError, DataError, FumeError
from fume.models.checkpoint import load_model_from_checkpoint, read_checkpoint
from fume.training.trainer import build_loggers, choose_precision
from fume.workflows.train import train


def epoch_losses(run_dir: Path) -> list[float]:
    log = pd.read_csv(run_dir / "csv" / "metrics.csv")
    return log.dropna(subset=["train_loss_epoch"]).sort_values("epoch")["train_loss_epoch"].tolist()


def test_two_epochs_lower_the_loss_and_write_the_run(trained_run):
    run = trained_run.run_dir
    losses = epoch_losses(run)
    assert len(losses) == 2
    assert losses[1] < losses[0]
    for name in ("best.ckpt", "last.ckpt"):
        assert (run / "checkpoints" / name).is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "training_curves.png").stat().st_size > 0
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["monitor"] == "val_balanced_accuracy" and summary["epochs_run"] == 2
    assert [e["epoch"] for e in summary["history"]] == [0, 1]
    for key in ("miou", "balanced_accuracy", "iou_gas", "macro_f1", "joint_score"):
        assert key in summary
    # The resolved config is saved beside the run and inside every checkpoint.
    saved = yaml.safe_load((run / "config.yaml").read_text())
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["hyper_parameters"]["config"] == saved
    assert ckpt["epoch"] == 1 and ckpt["global_step"] > 0
    assert Path(saved["data"]["dataset_root"]).is_absolute()


def test_checkpoint_loads_back_into_the_same_network(trained_run):
    model, config = load_model_from_checkpoint(trained_run.best_checkpoint)
    assert config.model.name == "fume" and not model.training
    x = torch.rand(1, 1, 64, 64)
    out = model(x, x, torch.ones(1, 2))
    assert out["cls_logits"].shape == (1, 3) and out["co2_seg_logits"].shape == (1, 3, 64, 64)


def test_fresh_run_refuses_a_folder_with_checkpoints(make_config, trained_run, tiny_dataset):
    with pytest.raises(FumeError, match="already holds checkpoints .*--resume"):
        train(make_config(tiny_dataset), run_dir=trained_run.run_dir)


def test_resume_continues_from_the_saved_epoch(make_config, trained_run, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    before = read_checkpoint(run / "checkpoints" / "last.ckpt")
    result = train(make_config(tiny_dataset, "training.num_epochs=3"), run_dir=run, resume=True)
    after = read_checkpoint(run / "checkpoints" / "last.ckpt")
    steps_per_epoch = before["global_step"] // 2
    assert result.epochs_run == 3
    assert after["epoch"] == 2 and after["global_step"] == before["global_step"] + steps_per_epoch
    # Only the third epoch was trained again; the history keeps the first two.
    log = pd.read_csv(run / "csv" / "metrics.csv").dropna(subset=["train_loss_epoch"])
    assert log["epoch"].tolist() == [0, 1, 2]
    assert [e["epoch"] for e in json.loads((run / "metrics.json").read_text())["history"]] == [0, 1, 2]
    # The optimiser state came back: AdamW's step counter continued.
    state = after["optimizer_states"][0]["state"]
    assert int(next(iter(state.values()))["step"]) == after["global_step"]


def test_resume_without_checkpoint_is_an_error(make_config, tiny_dataset, tmp_path):
    with pytest.raises(FumeError, match=r"cannot resume: checkpoint .*last.ckpt not found"):
        train(make_config(tiny_dataset), run_dir=tmp_path / "empty", resume=True)


def test_early_stopping_stops(make_config, tiny_dataset, tmp_path):
    # An improvement of more than 1.0 in balanced accuracy is impossible: stop after patience checks.
    cfg = make_config(tiny_dataset, "training.num_epochs=10", "training.early_stopping.patience=1",
                      "training.early_stopping.min_delta=1.0", "logging.tensorboard=false")
    result = train(cfg, run_dir=tmp_path / "run")
    assert result.stopped_early and result.epochs_run == 2


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(make_config, tiny_dataset, tmp_path, monkeypatch):
    import fume.training.module as module

    real = module.build_multitask_loss

    class NanAfterFirstEpoch(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.inner, self.calls = real(config), 0

        def forward(self, outputs, batch):
            losses = self.inner(outputs, batch)
            if torch.is_grad_enabled():
                self.calls += 1
                if self.calls > steps_per_epoch:
                    losses["loss"] = losses["loss"] * float("nan")
            return losses

    monkeypatch.setattr(module, "build_multitask_loss", NanAfterFirstEpoch)
    steps_per_epoch = len(pd.read_csv(tiny_dataset / "paired_train_annotations.csv")) // 4
    run = tmp_path / "run"
    with pytest.raises(module.NonFiniteLossError, match=rf"training loss is nan at global step {steps_per_epoch} \(epoch 1, batch 0\)"):
        train(make_config(tiny_dataset, "training.num_epochs=3", "logging.tensorboard=false"), run_dir=run)
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == steps_per_epoch
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_broken_data_fail_before_training_with_the_report(make_config, tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    table = pd.read_csv(root / "paired_train_annotations.csv")
    missing = root / table["co2_frame"].dropna().iloc[0]
    missing.unlink()
    with pytest.raises(DataError, match=r"failed validation:(.|\n)*not found"):
        train(make_config(root), run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_weighted_sampler_uses_inverse_class_frequency(make_config, tiny_dataset):
    from fume.training.datamodule import FumeDataModule

    data = FumeDataModule(make_config(tiny_dataset))
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    assert isinstance(sampler, WeightedRandomSampler)
    counts = data.train_set.table["class_id"].map(data.train_set.table["class_id"].value_counts())
    assert torch.allclose(sampler.weights, torch.tensor(1.0 / counts.to_numpy(), dtype=torch.double))
    plain = FumeDataModule(make_config(tiny_dataset, "weighted_sampling=false"))
    plain.setup("fit")
    assert not isinstance(plain.train_dataloader().sampler, WeightedRandomSampler)


def test_precision_follows_the_hardware(monkeypatch):
    assert choose_precision(True, "cpu") == "32-true"
    assert choose_precision(False, "gpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision(True, "auto") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision(True, "gpu") == "16-mixed"


def test_missing_logger_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("wandb", "mlflow") else real(name, *a))
    cfg = load_config(None, ["logging.wandb.enabled=true"])
    with pytest.raises(ConfigError, match=r"logging.wandb.enabled is true but the wandb package is not installed; .*pip install fume\[wandb\]"):
        build_loggers(cfg, tmp_path)
    cfg = load_config(None, ["logging.mlflow.enabled=true"])
    with pytest.raises(ConfigError, match=r"pip install fume\[mlflow\]"):
        build_loggers(cfg, tmp_path)
