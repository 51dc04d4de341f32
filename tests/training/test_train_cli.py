"""`fume train` as users run it (subprocesses): DDP on two CPU processes, Ctrl-C and kill -9 then --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from fume.config import shipped_configs
from fume.models.checkpoint import read_checkpoint
from fume.workflows.train import train

CONFIG = shipped_configs()["fume_fastscnn"]
# The console script: Lightning's DDP launcher starts the other processes by re-running it.
FUME = [str(Path(sys.executable).parent / "fume")]


@pytest.fixture
def fume_train(overrides_for):
    """fume_train(root, run_dir, *overrides) -> the `fume train` command line for the tiny data."""

    def command(root: Path, run: Path, *extra: str) -> list[str]:
        return [*FUME, "train", "-c", str(CONFIG), "--out", str(run), *overrides_for(root, "logging.tensorboard=false", *extra)]

    return command


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"fume train exited ({proc.returncode}) before writing {path}:\n{proc.stdout.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.2)


def test_two_process_ddp_on_cpu(fume_train, tiny_dataset, tmp_path):
    run = tmp_path / "ddp"
    cmd = fume_train(tiny_dataset, run, "training.num_epochs=1", "trainer.accelerator=cpu", "trainer.devices=2",
                     "trainer.strategy=ddp", "data.validate_before_training=false")
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in done.stderr + done.stdout  # a second process joined
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    # Each process draws half of the (weighted) samples per epoch: half the single-process steps.
    train_pairs = len(pd.read_csv(tiny_dataset / "paired_train_annotations.csv"))
    assert ckpt["global_step"] == (train_pairs // 2) // 4
    assert (run / "metrics.json").is_file() and (run / "config.yaml").is_file()


@pytest.mark.parametrize("how", ["ctrl_c", "kill"])
def test_interrupted_run_resumes(fume_train, make_config, tiny_dataset, tmp_path, how):
    """Ctrl-C saves last.ckpt and exits; kill -9 leaves the last epoch's last.ckpt intact.
    Either way `--resume` finishes the run from there."""
    run = tmp_path / "run"
    # Large enough that the run is still training when the signal arrives.
    cmd = fume_train(tiny_dataset, run, "training.num_epochs=40")
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT if how == "ctrl_c" else signal.SIGKILL)
    output, _ = proc.communicate(timeout=120)
    if how == "ctrl_c":
        assert proc.returncode == 1
        assert "interrupted at epoch" in output and "--resume" in output
        assert not list((run / "checkpoints").glob(".*.tmp-*"))  # the temporary file of a write is gone
    saved = read_checkpoint(run / "checkpoints" / "last.ckpt")  # loads: never a truncated file
    assert 0 < saved["global_step"] and saved["epoch"] < 39

    # Resume (in this process, to save a start-up) for one more epoch than the checkpoint's.
    result = train(make_config(tiny_dataset, "logging.tensorboard=false", f"training.num_epochs={saved['epoch'] + 2}"), run_dir=run, resume=True)
    final = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert result.epochs_run == final["epoch"] + 1 == saved["epoch"] + 2
    assert final["global_step"] > saved["global_step"]
    assert all(torch.isfinite(v).all() for v in final["state_dict"].values() if v.is_floating_point())
