"""Input checks and modality masking shared by every model's forward(co2, ch4, modality_mask).
The size rule itself is fume.contract's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fume.contract import check_size

FRAME_STD_FLOOR = 1e-3  # frames are in [0, 1]; a flat (or absent, zeroed) frame stays finite


def check_pair(co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> None:
    """Check the shapes of a forward(co2, ch4, modality_mask) call, with messages that name the
    expected shapes. Skipped while tracing or exporting (shapes are then fixed by the example)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return
    for name, frame in (("co2", co2), ("ch4", ch4)):
        if frame.dim() != 4 or frame.shape[1] != 1:
            raise ValueError(f"{name} must have shape (B, 1, H, W) (one gray channel), got {tuple(frame.shape)}")
    if co2.shape != ch4.shape:
        raise ValueError(f"co2 and ch4 must have the same shape (B, 1, H, W), got {tuple(co2.shape)} and {tuple(ch4.shape)}")
    if modality_mask.shape != (co2.shape[0], 2):
        raise ValueError(
            f"modality_mask must have shape (B, 2) = ({co2.shape[0]}, 2) [co2 present, ch4 present], "
            f"got {tuple(modality_mask.shape)}"
        )
    check_size(co2.shape[2], co2.shape[3])


def mask_frames(frames: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Standardise each present frame, zero the absent ones: (B, C, H, W) x (B,) -> (B, C, H, W).

    Per-frame standardisation (zero mean, unit standard deviation) because a shared encoder sees
    bright, contrasty CO2 frames and dark, faint CH4 frames in one batch: without it the batch-norm
    statistics follow the gas type and the faint CH4 plume barely reaches the classifier (the
    quickstart's balanced accuracy went from 0.68-0.85 to 0.82 with it). torch.where rather than a
    product: an absent frame full of NaN or inf still gives zeros.
    """
    frames = torch.where(present.view(-1, 1, 1, 1) > 0, frames, torch.zeros_like(frames))
    centred = frames - row_wise_mean(frames)
    # torch.std spelt out on the centred frame (reused for the output): two full-frame passes fewer
    # in the exported graph. Not an L2 norm: ONNX Runtime's ReduceL2 sums naively, 2.7e-5 relative
    # error at 640x480 against 1.7e-6 for ReduceMean, enough to break the export's parity check.
    count = int(frames.shape[1]) * int(frames.shape[2]) * int(frames.shape[3])
    variance = row_wise_mean(centred * centred) * (count / max(count - 1, 1))
    return centred / variance.sqrt().clamp(min=FRAME_STD_FLOOR)


def row_wise_mean(frames: torch.Tensor) -> torch.Tensor:
    """The mean over (C, H, W) of (B, C, H, W) as the mean of the rows' means: the same value, but
    exported as two short ReduceMeans. ONNX Runtime sums one ReduceMean in a single float32 run:
    over a whole bright frame that put the standardised values 3.2e-4 off and a trained quickstart
    model's exported logits 1.5e-2 off (PyTorch's float32 is within 5e-5 of float64 there), enough
    to fail the export's parity check; row by row they stay within 3e-6 (tests/models/test_onnx_export.py)."""
    return frames.mean(dim=3, keepdim=True).mean(dim=(1, 2), keepdim=True)


def mask_features(features: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Multiply (B, C, H, W) features by the (B,) presence flags: an absent gas contributes zeros."""
    return features * present.view(-1, 1, 1, 1).to(features.dtype)


def stacked_frames(co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
    """Both gases in one batch, (2B, 1, H, W): CO2 first, absent frames zeroed."""
    return torch.cat([mask_frames(co2, modality_mask[:, 0]), mask_frames(ch4, modality_mask[:, 1])])


def stacked_presence(modality_mask: torch.Tensor) -> torch.Tensor:
    """The (2B,) presence flags of stacked_frames' batch: CO2's then CH4's."""
    return torch.cat([modality_mask[:, 0], modality_mask[:, 1]])


def masked_mean(per_gas: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the present gases of per-gas outputs (2, B, C) -> (B, C); zeros when none is present.

    An absent gas's output is multiplied by 0, so its content cannot reach the result.
    """
    weights = modality_mask.t().unsqueeze(-1).to(per_gas.dtype)  # (2, B, 1)
    return (per_gas * weights).sum(0) / weights.sum(0).clamp(min=1.0)


def present_only(training: bool, fn: Callable[..., Any], present: torch.Tensor, *inputs: torch.Tensor, empty: Callable[[], Any] | None = None) -> Any:
    """fn(*inputs) over a batch whose samples `present` (B,) flags; fn returns a tensor or a tuple.

    While training, fn runs on the present samples only and the absent ones get zeros, so the
    batch-norm statistics inside fn (and the running statistics kept for inference) come from real
    frames: an absent gas's zeroed frame would otherwise pull every batch mean and variance of a
    shared encoder or a gas's decoder towards its own. The absent samples' outputs are never used
    (their features are masked before fusion, their segmentation loss is skipped). With nothing
    present, `empty()` is returned when given (else fn runs on the whole batch). In eval mode, or with every sample present, fn runs
    on the whole batch (the exported graph has no indexing).
    """
    keep = present > 0
    if not training or bool(keep.all()):
        return fn(*inputs)
    if not bool(keep.any()):  # a degenerate batch: no statistics from real frames to protect
        return empty() if empty is not None else fn(*inputs)
    index = keep.nonzero(as_tuple=True)[0]
    out = fn(*(x.index_select(0, index) for x in inputs))

    def scatter(part: torch.Tensor) -> torch.Tensor:
        full = part.new_zeros((present.shape[0], *part.shape[1:]))
        return full.index_copy(0, index, part)

    return tuple(scatter(o) for o in out) if isinstance(out, tuple) else scatter(out)
