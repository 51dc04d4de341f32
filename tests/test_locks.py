"""fume.locks: one process at a time in a run or experiments folder. Other processes hold the lock
in child processes that say "ready" on stdout and wait on stdin until the test closes it (or kill
them), so no test waits for a moment to come."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from fume.config import shipped_configs
from fume.locks import LOCK_NAME, FolderLocked, folder_lock, lock_owner

FUME = [str(Path(sys.executable).parent / "fume")]
RANK_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK", "GROUP_RANK")

# Holds FOLDER's lock, says "ready", and keeps it until its stdin closes.
HOLDER = """\
import sys
from fume.locks import folder_lock

with folder_lock(sys.argv[1]):
    print("ready", flush=True)
    sys.stdin.read()
"""

# Tries FOLDER's lock: prints "entered" and exits 0 if it got in, prints the error and exits 3 if not.
TRY = """\
import sys
from fume.locks import FolderLocked, folder_lock

try:
    with folder_lock(sys.argv[1]):
        print("entered", flush=True)
except FolderLocked as err:
    print(err, flush=True)
    sys.exit(3)
"""


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RANK_KEYS}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if not path.exists():
        path.write_text(text)
    return path


@contextmanager
def holder(tmp_path: Path, folder: Path) -> Iterator[subprocess.Popen]:
    """A live process holding FOLDER's lock for the block."""
    proc = subprocess.Popen(
        [sys.executable, str(script(tmp_path, "holder.py", HOLDER)), str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
        proc.wait(timeout=60)


def try_lock(tmp_path: Path, folder: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script(tmp_path, "try.py", TRY)), str(folder)],
        capture_output=True, text=True, env=child_env(**env), timeout=60,
    )


def test_the_lock_file_names_its_owner_and_goes_with_the_block(tmp_path: Path):
    run = tmp_path / "run"
    with folder_lock(run) as folder:
        assert folder == run and run.is_dir()
        info = json.loads((run / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["command"] and info["folder"] == str(run)
        assert datetime.fromisoformat(info["started"]).tzinfo is not None
        owner = lock_owner(run)
        assert owner is not None and owner.pid == os.getpid()
        with folder_lock(run):  # the owner may enter again
            pass
        assert (run / LOCK_NAME).is_file()  # still held by the outer block
        with folder_lock(run / "runs" / "g" / "v" / "seed0"):  # a run inside an experiments folder
            assert (run / "runs/g/v/seed0" / LOCK_NAME).is_file()
        assert not (run / "runs/g/v/seed0" / LOCK_NAME).exists()
    assert not (run / LOCK_NAME).exists()


def test_a_second_process_is_refused_with_the_owner_named(tmp_path: Path):
    run = tmp_path / "run"
    with holder(tmp_path, run) as proc:
        before = (run / LOCK_NAME).read_bytes()
        with pytest.raises(FolderLocked) as err:
            with folder_lock(run):
                pytest.fail("entered a folder another process holds")
        message = str(err.value)
        assert "\n" not in message
        assert str(run) in message and f"pid {proc.pid} on {socket.gethostname()}" in message
        assert "holder.py" in message and "since 20" in message
        assert (run / LOCK_NAME).read_bytes() == before  # the refused process changed nothing
        other = try_lock(tmp_path, run)
        assert other.returncode == 3 and f"pid {proc.pid}" in other.stdout
    assert proc.returncode == 0 and not (run / LOCK_NAME).exists()
    assert try_lock(tmp_path, run).returncode == 0  # free again


def test_the_stale_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    run = tmp_path / "run"
    with holder(tmp_path, run) as proc:
        proc.kill()  # kill -9: no clean-up, the file stays; the kernel drops the flock
        proc.wait(timeout=60)
    assert lock_owner(run).pid == proc.pid
    with caplog.at_level(logging.WARNING, logger="fume.locks"):
        with folder_lock(run):
            assert lock_owner(run).pid == os.getpid()
    assert f"taking over the stale lock of pid {proc.pid} on {socket.gethostname()} (no longer running" in caplog.text
    assert not (run / LOCK_NAME).exists()


@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt, "SIGINT"])
def test_the_lock_is_released_when_the_block_fails_or_is_interrupted(tmp_path: Path, stop):
    run = tmp_path / "run"
    expected = RuntimeError if stop is RuntimeError else KeyboardInterrupt
    with pytest.raises(expected):
        with folder_lock(run):
            if stop == "SIGINT":
                signal.raise_signal(signal.SIGINT)
            else:
                raise stop()
    assert not (run / LOCK_NAME).exists()
    assert try_lock(tmp_path, run).returncode == 0


@pytest.mark.parametrize("rank", [{"RANK": "1"}, {"LOCAL_RANK": "1"}, {"NODE_RANK": "1"}])
def test_a_ddp_rank_above_zero_neither_takes_nor_checks_the_lock(tmp_path: Path, rank: dict[str, str]):
    free = tmp_path / "free"
    entered = try_lock(tmp_path, free, **rank)
    assert entered.returncode == 0 and "entered" in entered.stdout and not (free / LOCK_NAME).exists()
    run = tmp_path / "run"
    with holder(tmp_path, run) as proc:  # the launcher (rank 0) holds the run's lock
        entered = try_lock(tmp_path, run, **rank)
        assert entered.returncode == 0 and "entered" in entered.stdout
        assert lock_owner(run).pid == proc.pid


# ------------------------------------------------------------------ the commands


def assert_refused(result: subprocess.CompletedProcess, folder: Path, pid: int) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert f"{folder} is in use by another FUME process: pid {pid} on {socket.gethostname()}" in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing written into it


def test_fume_train_into_a_locked_run_folder_stops_at_once(tmp_path: Path):
    run = tmp_path / "run"
    with holder(tmp_path, run) as proc:
        args = [
            "train", "-c", str(shipped_configs()["fume_fastscnn"]), "--out", str(run),
            f"data.dataset_root={tmp_path / 'data'}", "data.num_workers=0", "training.num_epochs=1",
        ]
        result = subprocess.run([*FUME, *args], capture_output=True, text=True, env=child_env(OMP_NUM_THREADS="1"), timeout=300)
        assert_refused(result, run, proc.pid)


def test_fume_experiments_into_a_locked_folder_stops_at_once(tmp_path: Path):
    out = tmp_path / "out"
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "g", "kind": "ablation", "base": str(shipped_configs()["fume_fastscnn"]), "reference": "fume",
        "variants": [{"name": "fume"}],
    }))
    with holder(tmp_path, out) as proc:
        result = subprocess.run(
            [*FUME, "experiments", str(grid), "--out", str(out), "--seeds", "0", "--preset", "quick"],
            capture_output=True, text=True, env=child_env(OMP_NUM_THREADS="1"), timeout=300,
        )
        assert_refused(result, out, proc.pid)
