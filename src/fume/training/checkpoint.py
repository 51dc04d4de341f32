"""Lightning writes checkpoints through FUME's atomic writer (fume.io): a kill during the write
never leaves a truncated .ckpt under its final name, and Ctrl-C / SIGTERM wait until the file is
complete (then CheckpointOnInterrupt saves last.ckpt and the run stops). And Lightning reads
them (`--resume`) through FUME's safe reader: a checkpoint is data, never code."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from fume.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """`preloaded`: (path, checkpoint) already read by the caller (fume.workflows.train checks the
    resumed file before touching the run folder); handed to Lightning once instead of a second read."""

    def __init__(self, preloaded: tuple[str | os.PathLike, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self._preloaded = preloaded

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Always weights-only (whatever Lightning or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD ask for);
        a broken or malicious file is one FumeError line naming it."""
        from fume.models.checkpoint import read_checkpoint

        if self._preloaded is not None and os.path.abspath(self._preloaded[0]) == os.path.abspath(path):
            checkpoint, self._preloaded = self._preloaded[1], None
            return checkpoint
        return read_checkpoint(path, map_location="cpu" if map_location is None or callable(map_location) else map_location)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
