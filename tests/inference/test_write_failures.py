"""Ordinary write failures end `fume` with one line naming the path and the cause (exit 1), and
leave nothing half-written under final names.

How the failures are made, deterministically:
  * a full disk: os.replace of one chosen temporary file raises ENOSPC in this process (the moment
    fume.io would rename the finished temporary file: the same code path as a write() failing),
    or, in a subprocess, RLIMIT_FSIZE with SIGXFSZ ignored, so the kernel itself refuses the
    write with EFBIG;
  * a read-only folder: the tests run as root, which ignores permission bits, so creating a file
    or folder inside it raises EACCES through tempfile (the only way fume.io creates files);
    test_chmod_read_only_folder does it with a real chmod 0o555 and is skipped where the chmod
    does not stop this user from writing (root).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fume.cli import main
from fume.errors import WriteError


def fume(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    """`fume ARGS` through the console script's main(), in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["fume", *map(str, args)])
    with pytest.raises(SystemExit) as ended:
        main()
    return ended.value.code, capsys.readouterr().err


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def disk_full_at(monkeypatch: pytest.MonkeyPatch, name: str, after: int = 0) -> list[Path]:
    """The rename of a temporary file into a file called `name` ("*" any file of that suffix)
    fails with ENOSPC, after `after` successful ones; returns the targets seen."""
    real_replace = os.replace
    seen: list[Path] = []

    def replace(src, dst, *args, **kwargs):
        src_name, target = os.path.basename(os.fsdecode(src)), Path(os.fsdecode(dst))
        if ".tmp" in src_name and (target.name == name or (name.startswith("*") and target.name.endswith(name[1:]))):
            seen.append(target)
            if len(seen) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(src))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return seen


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Creating anything inside `folder` fails with EACCES, as in a read-only folder for a non-root user."""
    for name in ("mkstemp", "mkdtemp"):
        real = getattr(tempfile, name)

        def refuse(*args, _real=real, **kwargs):
            where = Path(kwargs.get("dir") or tempfile.gettempdir()).resolve()
            if where == folder.resolve() or folder.resolve() in where.parents:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(where / "new-file"))
            return _real(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, refuse)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------ fume evaluate


def test_evaluate_disk_full_while_drawing_leaves_no_outputs(checkpoint, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval"
    seen = disk_full_at(monkeypatch, "qualitative.png")
    code, err = fume(monkeypatch, capsys, "evaluate", "-k", checkpoint, "--split", "val", "--save-masks", "--out", out)
    assert seen, "the qualitative figure was never written"
    assert code == 1
    assert one_line(err) == f"error: cannot write {out / 'qualitative.png'}: No space left on device"
    # metrics.json, predictions.csv and masks/ were written before the figure: none of them moved in
    assert files_under(out) == []


def test_evaluate_into_a_read_only_folder(checkpoint, tmp_path, monkeypatch, capsys):
    out = tmp_path / "locked"
    out.mkdir()
    read_only(monkeypatch, out)
    code, err = fume(monkeypatch, capsys, "evaluate", "-k", checkpoint, "--split", "val", "--out", out)
    assert code == 1
    assert one_line(err) == f"error: cannot write {out}: Permission denied"
    assert files_under(out) == []


def test_chmod_read_only_folder(checkpoint, dataset, tmp_path, monkeypatch, capsys):
    """A real read-only folder; proves something only where the permission bits stop this user."""
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("this user (root) can write into a 0o555 folder; see test_evaluate_into_a_read_only_folder")
        code, err = fume(monkeypatch, capsys, "predict", "-k", checkpoint, "--input", dataset / "paired_val_annotations.csv", "--out", out)
        assert code == 1 and one_line(err).startswith(f"error: cannot write {out}: Permission denied")
        assert files_under(out) == []
    finally:
        out.chmod(0o755)


# ------------------------------------------------------------------ --out naming a file


@pytest.mark.parametrize("command", ["evaluate", "predict", "train", "export", "quickstart", "experiments"])
def test_out_naming_an_existing_file_is_refused_at_once(command, checkpoint, dataset, tmp_path, monkeypatch, capsys):
    existing = tmp_path / "results.txt"
    existing.write_text("mine\n")
    args = {
        "evaluate": ["evaluate", "-k", checkpoint, "--out", existing],
        "predict": ["predict", "-k", checkpoint, "--input", dataset / "paired_val_annotations.csv", "--out", existing],
        "train": ["train", "-c", "quickstart", "--out", existing],
        "export": ["export", "-k", checkpoint, "--out", existing / "fume.onnx"],
        "quickstart": ["quickstart", "--out", existing],
        "experiments": ["experiments", "baselines", "--preset", "quick", "--out", existing],
    }[command]
    code, err = fume(monkeypatch, capsys, *args)
    assert code == 1
    line = one_line(err)
    assert line.startswith(f"error: --out {args[-1]} ") and "a file, not a folder" in line, line
    assert existing.read_text() == "mine\n" and files_under(tmp_path) == ["results.txt"]


# ------------------------------------------------------------------ fume predict


def test_predict_disk_full_leaves_no_outputs(checkpoint, dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pred"
    seen = disk_full_at(monkeypatch, "*.png", after=2)  # the third PNG (an overlay) of the run
    code, err = fume(monkeypatch, capsys, "predict", "-k", checkpoint, "--input", dataset / "paired_val_annotations.csv", "--out", out)
    assert code == 1
    staging = seen[-1].parent.parent
    assert staging.name.startswith(".fume-partial-") and seen[-1].parent.name == "overlays"
    assert one_line(err) == f"error: cannot write {out / 'overlays' / seen[-1].name}: No space left on device"
    assert files_under(out) == []


RLIMIT_RUNNER = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv.pop(1)), resource.RLIM_INFINITY)); "
    "from fume.cli import main; main()"
)


def test_predict_file_size_limit_in_a_real_process(checkpoint, dataset, tmp_path):
    """The kernel refuses the write (EFBIG, as a full disk gives ENOSPC): one line, exit 1, nothing in OUT."""
    out = tmp_path / "pred"
    proc = subprocess.run(
        [sys.executable, "-c", RLIMIT_RUNNER, "600", "predict", "-k", str(checkpoint), "--input", str(dataset / "paired_val_annotations.csv"),
         "--out", str(out)], capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith(f"error: cannot write {out}/") and line.endswith(": File too large"), line
    assert ".fume-partial" not in line and ".tmp" not in line
    assert files_under(out) == []


# ------------------------------------------------------------------ fume export


def test_export_file_size_limit_in_a_real_process(checkpoint, tmp_path):
    out = tmp_path / "deploy" / "fume.onnx"
    proc = subprocess.run(
        [sys.executable, "-c", RLIMIT_RUNNER, "100000", "export", "-k", str(checkpoint), "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1, proc.stderr
    assert one_line(proc.stderr) == f"error: cannot write {out}: File too large"
    assert files_under(out.parent) == []


# ------------------------------------------------------------------ fume train


TRAIN_OVERRIDES = [
    "data.image_size=[64,64]", "data.num_workers=0", "data.pin_memory=false", "training.batch_size=4", "training.num_epochs=2",
    "validation.batch_size=8", "logging.progress_bar=false", "logging.metrics_table=false", "logging.log_every_n_steps=1",
    "logging.tensorboard=false",
]


def test_train_checkpoint_write_failing_keeps_the_previous_last_ckpt(dataset, tmp_path, monkeypatch, capsys):
    import torch

    run = tmp_path / "run"
    seen = disk_full_at(monkeypatch, "last.ckpt", after=1)  # epoch 1's last.ckpt is written, epoch 2's is not
    code, err = fume(monkeypatch, capsys, "train", "-c", "fume_fastscnn", "--out", run, f"data.dataset_root={dataset}", *TRAIN_OVERRIDES)
    assert len(seen) == 2
    assert code == 1
    last = run / "checkpoints" / "last.ckpt"
    # Lightning's own log lines come first; the command ends with the one error line, no traceback
    assert "Traceback" not in err and err.strip().splitlines()[-1] == f"error: cannot write {last}: No space left on device", err
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0  # the previous one, whole
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]


def test_write_error_names_the_final_path_not_a_temporary_one(tmp_path, monkeypatch):
    from fume.io import staged_dir, write_json

    disk_full_at(monkeypatch, "a.json")
    with pytest.raises(WriteError) as raised:
        with staged_dir(tmp_path / "out") as staging:
            write_json(staging / "sub" / "a.json", {"x": 1})
    assert str(raised.value) == f"cannot write {tmp_path / 'out' / 'sub' / 'a.json'}: No space left on device"
    assert files_under(tmp_path / "out") == []
