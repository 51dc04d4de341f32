"""Files from elsewhere are data, never code: a checkpoint whose unpickling would run a command is
refused by every command that reads checkpoints, and a YAML tag that constructs Python objects is
refused by the config reader; both with one line, and the command never runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

FUME = [sys.executable, "-c", "from fume.cli import main; main()"]


class _Command:
    """Unpickling this calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def run(*args: object, force_unsafe: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": force_unsafe}
    return subprocess.run([*FUME, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def assert_refused(done: subprocess.CompletedProcess, *parts: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(p in last for p in parts), output


@pytest.mark.parametrize("force_unsafe", ["0", "1"])
def test_every_checkpoint_reader_refuses_a_pickle_that_runs_code(tmp_path: Path, force_unsafe: str) -> None:
    marker = tmp_path / "MARKER"
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"config": {}}, "payload": _Command(marker)}, ckpt)
    frame = tmp_path / "co2.png"
    frame.write_bytes(b"not read: the checkpoint is refused first")
    for args in (
        ("evaluate", "--checkpoint", ckpt, "--out", tmp_path / "eval"),
        ("predict", "--checkpoint", ckpt, "--co2", frame, "--out", tmp_path / "pred"),
        ("export", "--checkpoint", ckpt, "--out", tmp_path / "model.onnx"),
        ("benchmark", "--checkpoint", ckpt, "--backend", "torch", "--runs", "1"),
    ):
        done = run(*args, force_unsafe=force_unsafe)
        assert_refused(done, str(ckpt))
        assert not marker.exists(), f"{args[0]} ran code from the checkpoint"


def test_a_yaml_tag_that_builds_objects_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    config = tmp_path / "evil.yaml"
    config.write_text(f'experiment: !!python/object/apply:os.system ["touch {marker}"]\n')
    done = run("train", "-c", config, "--out", tmp_path / "run")
    assert_refused(done, str(config), "not valid YAML")
    assert not marker.exists() and not (tmp_path / "run").exists()
