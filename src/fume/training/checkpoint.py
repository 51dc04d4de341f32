"""Lightning writes checkpoints through FUME's atomic writer (fume.io): a kill during the write
never leaves a truncated .ckpt under its final name, and Ctrl-C / SIGTERM wait until the file is
complete (then CheckpointOnInterrupt saves last.ckpt and the run stops)."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from fume.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
