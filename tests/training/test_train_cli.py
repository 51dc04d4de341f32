"""`fume train` as users run it (subprocesses): DDP on two CPU processes; Ctrl-C, SIGTERM and
kill -9 then --resume. Each signal is sent by the training process to itself at a known point (a
runner script wraps torch.save or the training step), so no test waits for a moment to come."""

from __future__ import annotations

import os
import subprocess
import sys
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
def train_args(overrides_for):
    """train_args(root, run_dir, *overrides) -> the arguments of `fume train` for the tiny data."""

    def arguments(root: Path, run: Path, *extra: str) -> list[str]:
        return ["train", "-c", str(CONFIG), "--out", str(run), *overrides_for(root, "logging.tensorboard=false", *extra)]

    return arguments


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# `fume` (fume.cli.main) with one signal sent to itself at a known point of the run:
#   where="write": in the middle of writing the last.ckpt of epoch EPOCH (after the archive's first
#                  chunks, from inside the file object torch.save writes to)
#   where="step":  in the training step of batch 1 of epoch EPOCH (outside any write)
RUNNER = """\
import os
import signal
import sys
from pathlib import Path

import torch

from fume.cli import main
from fume.training.module import FumeTask

SIGNUM, WHERE, EPOCH = signal.{signal}, {where!r}, {epoch}
sent = False


def send(moment):
    global sent
    sent = True
    print(f"runner: sending {{SIGNUM.name}} {{moment}}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), SIGNUM)


class Tripwire:
    \"\"\"The checkpoint's open file; the signal goes out while torch.save is writing to it.\"\"\"

    def __init__(self, f):
        self.f, self.chunks = f, 0

    def write(self, data):
        self.chunks += 1
        if self.chunks == 3:
            send(f"in the middle of writing {{Path(self.f.name).name}} (epoch {{EPOCH}}, chunk 3)")
        return self.f.write(data)

    def flush(self):
        self.f.flush()


real_save, real_step = torch.save, FumeTask.training_step


def save(obj, f, *args, **kwargs):
    is_last = Path(str(getattr(f, "name", ""))).name.startswith(".last.")
    if WHERE == "write" and not sent and is_last and isinstance(obj, dict) and obj.get("epoch") == EPOCH:
        f = Tripwire(f)
    return real_save(obj, f, *args, **kwargs)


def training_step(self, batch, batch_idx):
    if WHERE == "step" and not sent and self.current_epoch == EPOCH and batch_idx == 1:
        send(f"in the training step of epoch {{EPOCH}}, batch 1")
    return real_step(self, batch, batch_idx)


torch.save, FumeTask.training_step = save, training_step
sys.argv[0] = "fume"
main()
"""


def run_with_signal(tmp_path: Path, args: list[str], signal_name: str, where: str, epoch: int = 1) -> subprocess.CompletedProcess:
    runner = tmp_path / f"fume_{signal_name.lower()}_{where}.py"
    runner.write_text(RUNNER.format(signal=signal_name, where=where, epoch=epoch))
    return subprocess.run([sys.executable, str(runner), *args], env=env(), capture_output=True, text=True, timeout=600)


def steps_per_epoch(root: Path) -> int:
    """Batches of 4 per epoch, the last partial one dropped (the tiny config's batch size)."""
    return len(pd.read_csv(root / "paired_train_annotations.csv")) // 4


def assert_clean_interrupt(done: subprocess.CompletedProcess, run: Path, epoch: int) -> None:
    """Exit code 1, no traceback, and the last line says where the run stopped and how to go on."""
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and "enforce fail" not in output
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted at epoch {epoch}, step ") and "--resume" in last, output
    assert str(run / "checkpoints" / "last.ckpt") in last
    assert not list((run / "checkpoints").glob(".*.tmp*"))  # the temporary file of every write is gone


@pytest.mark.slow  # two processes start and sync: ~10 s on 2 cores
def test_two_process_ddp_on_cpu(train_args, tiny_dataset, tmp_path):
    run = tmp_path / "ddp"
    cmd = [*FUME, *train_args(tiny_dataset, run, "training.num_epochs=1", "trainer.accelerator=cpu", "trainer.devices=2",
                              "trainer.strategy=ddp", "data.validate_before_training=false")]
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in done.stderr + done.stdout  # a second process joined
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    # Each process draws half of the (weighted) samples per epoch: half the single-process steps.
    train_pairs = len(pd.read_csv(tiny_dataset / "paired_train_annotations.csv"))
    assert ckpt["global_step"] == (train_pairs // 2) // 4
    assert (run / "metrics.json").is_file() and (run / "config.yaml").is_file()


@pytest.mark.slow  # a real training run, interrupted, then resumed: ~12 s
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_signal_during_a_checkpoint_write_waits_for_the_file_then_stops_cleanly(train_args, tiny_dataset, tmp_path, signal_name):
    """The fault of a Ctrl-C inside torch.save (`RuntimeError: [enforce fail at inline_container.cc]`
    and a traceback): now the write finishes, then the run stops as documented and resumes."""
    run = tmp_path / "run"
    done = run_with_signal(tmp_path, train_args(tiny_dataset, run, "training.num_epochs=4"), signal_name, "write", epoch=1)
    assert f"runner: sending {signal_name} in the middle of writing .last." in done.stderr, done.stdout + done.stderr
    assert_clean_interrupt(done, run, epoch=1)
    saved = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert saved["epoch"] == 1 and saved["global_step"] == 2 * steps_per_epoch(tiny_dataset)

    resumed = subprocess.run([*FUME, *train_args(tiny_dataset, run, "training.num_epochs=3"), "--resume"],
                             env=env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'}" in resumed.stderr
    final = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert final["epoch"] == 2 and final["global_step"] == 3 * steps_per_epoch(tiny_dataset)


@pytest.mark.parametrize("how", ["ctrl_c", "kill"])
def test_interrupted_run_resumes(train_args, make_config, tiny_dataset, tmp_path, how):
    """Ctrl-C in a training step saves last.ckpt and exits; kill -9 in the middle of writing a
    last.ckpt leaves the previous epoch's last.ckpt intact. Either way `--resume` finishes the run."""
    run = tmp_path / "run"
    args = train_args(tiny_dataset, run, "training.num_epochs=40")
    per_epoch = steps_per_epoch(tiny_dataset)
    if how == "ctrl_c":
        done = run_with_signal(tmp_path, args, "SIGINT", "step", epoch=1)
        assert_clean_interrupt(done, run, epoch=1)
        saved = read_checkpoint(run / "checkpoints" / "last.ckpt")
        assert saved["epoch"] == 1 and saved["global_step"] == per_epoch + 1  # stopped before batch 1's step
    else:
        done = run_with_signal(tmp_path, args, "SIGKILL", "write", epoch=1)
        assert done.returncode == -9, done.stdout + done.stderr
        assert "in the middle of writing .last." in done.stderr
        saved = read_checkpoint(run / "checkpoints" / "last.ckpt")  # loads: never a truncated file
        assert saved["epoch"] == 0 and saved["global_step"] == per_epoch  # epoch 0's, untouched
        assert len(list((run / "checkpoints").glob(".last.*.tmp.ckpt"))) == 1  # kill -9 cannot clean up

    # Resume (in this process, to save a start-up) for one more epoch than the checkpoint's.
    result = train(make_config(tiny_dataset, "logging.tensorboard=false", f"training.num_epochs={saved['epoch'] + 2}"), run_dir=run, resume=True)
    final = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert result.epochs_run == final["epoch"] + 1 == saved["epoch"] + 2
    assert final["global_step"] > saved["global_step"]
    assert all(torch.isfinite(v).all() for v in final["state_dict"].values() if v.is_floating_point())
