"""`fume train --resume` is safe and keeps the run's history: a checkpoint is read as data (never
code), a broken one stops before the run folder changes, a moved folder keeps its best model, and
the logs keep every epoch across interruptions."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from test_train_cli import CONFIG, FUME, env  # pytest puts this folder on sys.path

from fume.errors import FumeError
from fume.models.checkpoint import read_checkpoint
from fume.training.checkpoint import AtomicCheckpointIO


@pytest.fixture
def train_args(overrides_for):
    """train_args(root, run_dir, *overrides) -> the arguments of `fume train` for the tiny data."""
    return lambda root, run, *extra: ["train", "-c", str(CONFIG), "--out", str(run), *overrides_for(root, "logging.tensorboard=false", *extra)]


class _Marker:
    """Unpickling this calls os.system: a checkpoint that would run code when loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "global_step": 1, "state_dict": {}, "payload": _Marker(marker)}, path)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(done: subprocess.CompletedProcess, *parts: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), output
    for part in parts:
        assert part in last, output


@pytest.mark.parametrize("force_unsafe", ["0", "1"])
def test_resume_never_runs_code_from_a_checkpoint(train_args, tiny_dataset, tmp_path, force_unsafe):
    run, marker = tmp_path / "run", tmp_path / "MARKER"
    last = malicious_checkpoint(run / "checkpoints" / "last.ckpt", marker)
    before = snapshot(run)
    done = subprocess.run([*FUME, *train_args(tiny_dataset, run), "--resume"], capture_output=True, text=True, timeout=300,
                          env={**env(), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": force_unsafe})
    assert not marker.exists()
    assert_one_line_error(done, f"cannot read checkpoint {last}", "UnpicklingError")
    assert snapshot(run) == before


def test_lightning_reads_checkpoints_through_the_safe_reader(tmp_path, monkeypatch):
    """What trainer.fit(ckpt_path=...) calls: weights-only whatever Lightning or the environment ask."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "MARKER"
    path = malicious_checkpoint(tmp_path / "last.ckpt", marker)
    with pytest.raises(FumeError, match=rf"cannot read checkpoint {path}: UnpicklingError"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    with pytest.raises(FumeError, match="cannot read checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()


def test_resume_from_a_truncated_checkpoint_changes_nothing(train_args, trained_run, tiny_dataset, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    last = run / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    before = snapshot(run)
    done = subprocess.run([*FUME, *train_args(tiny_dataset, run), "--resume"], env=env(), capture_output=True, text=True, timeout=300)
    assert_one_line_error(done, f"cannot read checkpoint {last}", "failed")
    assert snapshot(run) == before  # metrics.csv, metrics.json, config.yaml: nothing renamed or rewritten


# The monitored score (val_balanced_accuracy) of each epoch, forced: epoch 1 is the best, and the
# epochs after the resume are worse.
SCORES = {0: 0.5, 1: 0.9, 2: 0.3, 3: 0.2, 4: 0.1}


@pytest.fixture
def forced_scores(monkeypatch):
    from fume.training.module import FumeTask

    real = FumeTask.log_dict

    def log_dict(self, metrics, *args, **kwargs):
        if "val_balanced_accuracy" in metrics and not self.trainer.sanity_checking:
            score = SCORES[self.current_epoch]
            metrics = {**metrics, "val_balanced_accuracy": score}
            self.last_val_metrics["balanced_accuracy"] = score
        return real(self, metrics, *args, **kwargs)

    monkeypatch.setattr(FumeTask, "log_dict", log_dict)
    return SCORES


@pytest.mark.parametrize("how", ["move", "copy"])
def test_resume_in_a_moved_folder_keeps_the_best_checkpoint(make_config, tiny_dataset, tmp_path, forced_scores, how):
    import json
    import shutil

    from fume.workflows.train import train

    first, run = tmp_path / "first", tmp_path / "elsewhere" / "run"
    train(make_config(tiny_dataset, "logging.tensorboard=false", "training.num_epochs=2"), run_dir=first)
    assert read_checkpoint(first / "checkpoints" / "best.ckpt")["epoch"] == 1
    run.parent.mkdir()
    (shutil.move if how == "move" else shutil.copytree)(first, run)
    original = snapshot(first) if how == "copy" else None
    best = (run / "checkpoints" / "best.ckpt").read_bytes()

    result = train(make_config(tiny_dataset, "logging.tensorboard=false", "training.num_epochs=4"), run_dir=run, resume=True)
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 3
    assert (run / "checkpoints" / "best.ckpt").read_bytes() == best  # epochs 2 and 3 were worse
    assert result.best_checkpoint == run / "checkpoints" / "best.ckpt" and result.best_score == pytest.approx(0.9)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["best_epoch"] == 1 == read_checkpoint(run / "checkpoints" / "best.ckpt")["epoch"]
    assert summary["best_score"] == pytest.approx(0.9) and summary["balanced_accuracy"] == pytest.approx(0.9)
    assert summary["best_checkpoint"] == str(run / "checkpoints" / "best.ckpt")
    assert [e["epoch"] for e in summary["history"]] == [0, 1, 2, 3]
    if original is not None:
        assert snapshot(first) == original  # resuming the copy leaves the original alone


@pytest.mark.slow  # three training processes (Ctrl-C, kill -9, resume): ~17 s
def test_logs_keep_every_epoch_across_interruptions(train_args, tiny_dataset, tmp_path):
    """Ctrl-C in epoch 1, resume; kill -9 while writing epoch 2's last.ckpt, resume again: one
    metrics.csv with every epoch once (learning rate included), metrics.json with every epoch."""
    import json

    import pandas as pd
    from test_train_cli import assert_clean_interrupt, run_with_signal

    run = tmp_path / "run"
    args = train_args(tiny_dataset, run, "training.num_epochs=4")
    assert_clean_interrupt(run_with_signal(tmp_path, args, "SIGINT", "step", epoch=1), run, epoch=1)
    killed = run_with_signal(tmp_path, [*args, "--resume"], "SIGKILL", "write", epoch=2)
    assert killed.returncode == -9 and "in the middle of writing .last." in killed.stderr, killed.stdout + killed.stderr
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 1
    done = subprocess.run([*FUME, *args, "--resume"], env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    assert sorted(p.name for p in (run / "csv").glob("*.csv")) == ["metrics.csv"]
    log = pd.read_csv(run / "csv" / "metrics.csv")
    for column in ("train_loss_epoch", "val_balanced_accuracy"):
        assert log.dropna(subset=[column])["epoch"].tolist() == [0, 1, 2, 3], column
    lr = [c for c in log.columns if c.startswith("lr-")]
    assert lr
    rates = log.dropna(subset=lr, how="all")
    assert rates["epoch"].tolist() == [0, 1, 2, 3]
    assert log.groupby("epoch")["step"].is_monotonic_increasing.all()
    summary = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in summary["history"]] == [0, 1, 2, 3]
    assert (run / "training_curves.png").stat().st_size > 0
