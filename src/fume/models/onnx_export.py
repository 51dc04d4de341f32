"""ONNX export of any registry model: inputs co2, ch4, modality_mask; the model's output names;
dynamic batch; fixed H x W (the size exported at).

Uses the TorchScript exporter (torch.onnx.export(..., dynamo=False)): with torch 2.13 it gives a
dynamic batch dimension and ONNX Runtime parity at ~1e-6, while the torch.export-based exporter
fixed the batch size of our models.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from fume.models.complexity import example_pair

INPUT_NAMES = ["co2", "ch4", "modality_mask"]
DEFAULT_OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, size: tuple[int, int] = (640, 480), opset: int = DEFAULT_OPSET) -> list[str]:
    """Write `model` (put in eval mode) to `path` for frames of size (W, H); returns the output names.

    The file is written under a temporary name and moved into place, so a failed export leaves
    no partial file at `path`.
    """
    path = Path(path)
    model.eval()
    example = example_pair(size, batch=1)
    with torch.no_grad():
        output_names = list(model(*example))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with warnings.catch_warnings():
            # Frame sizes are constants of the exported graph by design (see the module docstring).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                example,
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=INPUT_NAMES,
                output_names=output_names,
                dynamic_axes={name: {0: "batch"} for name in INPUT_NAMES + output_names},
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return output_names
