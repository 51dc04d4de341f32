"""ONNX export of any registry model, with FUME's metadata and a parity check against PyTorch.

The graph: inputs co2, ch4, modality_mask; the model's output names; dynamic batch; fixed H x W
(the size exported at). It uses the TorchScript exporter (torch.onnx.export(..., dynamo=False)):
with torch 2.13 it gives a dynamic batch dimension and ONNX Runtime parity at ~1e-6, while the
torch.export-based exporter fixed the batch size of our models. The metadata is the run's
configuration (class names, pH mapping, frame size), so a deployed file alone says what it predicts.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fume.contract import INPUT_NAMES
from fume.errors import ConfigError, FumeError
from fume.inference.backends import META_CONFIG, META_IMAGE_SIZE, OnnxBackend
from fume.io import write_with
from fume.models.complexity import example_pair

DEFAULT_OPSET = 17
# Parity: max |torch - onnxruntime| <= PARITY_MAX_ABS_DIFF x max(1, largest |logit| of that output).
# For outputs within [-1, 1] this is the absolute 1e-4; a trained model's confident seg
# logits reach 50-160, where float32 rounding alone moves logits by 1e-4 (measured up to 1.6e-4 on a
# quickstart checkpoint, with every argmax equal), so the allowance scales with the output's range.
PARITY_MAX_ABS_DIFF = 1e-4
PARITY_MIN_AGREEMENT = 0.999  # smallest allowed share of pixels (and pairs) with the same argmax


def export_onnx(
    model: nn.Module, path: str | Path, size: tuple[int, int] = (640, 480), opset: int = DEFAULT_OPSET, for_int8: bool = False
) -> list[str]:
    """Write `model` (put in eval mode) to `path` for frames of size (W, H); returns the output names.
    `for_int8`: the graph to quantize, without the gate spreads that only pay in ONNX Runtime's
    fp32 blocked layout (fume.models.blocks.spread_for_export); it computes the same."""
    from fume.models.blocks import spread_gates_on_export

    model.eval()
    example = example_pair(size, batch=1)
    with torch.no_grad():
        output_names = list(model(*example))

    def export(tmp: Path) -> None:
        with warnings.catch_warnings(), spread_gates_on_export(not for_int8):
            # Frame sizes are constants of the exported graph by design (see the module docstring).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model, example, str(tmp), dynamo=False, opset_version=opset, input_names=list(INPUT_NAMES),
                output_names=output_names, dynamic_axes={name: {0: "batch"} for name in [*INPUT_NAMES, *output_names]},
            )
        add_symbolic_shapes(tmp)

    write_with(path, export)
    return output_names


def add_symbolic_shapes(path: Path) -> None:
    """Store every intermediate tensor's shape in the file, the batch as the symbol 'batch'
    (ONNX Runtime's symbolic shape inference). Its blocked-layout optimiser multiplies or adds two
    feature maps in place only when it can prove their shapes equal; with the batch dynamic it
    could not, and converted both to NCHW and back around each of them. A graph the inference
    cannot handle is left as exported (it runs the same, only slower)."""
    import onnx

    model = onnx.load(str(path))
    try:  # needs sympy (PyTorch's dependency, so present wherever FUME exports)
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # noqa: BLE001 (a third-party inference that gives up on some graphs)
        return
    if inferred is not None:
        onnx.save(inferred, str(path))


def add_metadata(onnx_path: Path, config: Any, size: tuple[int, int]) -> None:
    """Store the run's configuration and frame size in the ONNX file, so a deployed file alone says
    which classes it predicts and how pH maps to them."""
    set_metadata(onnx_path, {META_CONFIG: json.dumps(config.to_dict()), META_IMAGE_SIZE: f"{size[0]}x{size[1]}", "fume.model": config.model.name})


def set_metadata(onnx_path: Path, entries: dict[str, str]) -> None:
    """Write `entries` into the ONNX file's metadata, replacing those keys and keeping the others."""
    import onnx

    model = onnx.load(str(onnx_path))
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "fume"
    write_with(onnx_path, lambda tmp: onnx.save(model, str(tmp)))


def export_fp32(model: Any, config: Any, path: Path, size: tuple[int, int], opset: int | None = None, for_int8: bool = False) -> list[str]:
    """Export `model` to `path` with FUME's metadata; returns the output names (for_int8: see export_onnx)."""
    try:
        names = export_onnx(model, path, size=size, opset=opset or DEFAULT_OPSET, for_int8=for_int8)
    except ValueError as err:  # e.g. a frame size that is not a multiple of 32
        raise ConfigError(f"cannot export at {size[0]}x{size[1]}: {err}") from None
    add_metadata(path, config, size)
    return names


def onnx_bytes(model: Any, config: Any, size: tuple[int, int]) -> bytes:
    """The exported model as bytes (for an in-memory ONNX Runtime session)."""
    with tempfile.TemporaryDirectory(prefix="fume-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_fp32(model, config, path, size)
        return path.read_bytes()


def parity_inputs(size: tuple[int, int], real: list[dict[str, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """A batch of 3: two random pairs (one with both gases, one CO2 only, so the modality mask is
    exercised) and, when given, real pairs appended."""
    width, height = size
    rng = np.random.default_rng(0)
    co2 = rng.random((2, 1, height, width), dtype=np.float32)
    ch4 = rng.random((2, 1, height, width), dtype=np.float32)
    mask = np.array([[1, 1], [1, 0]], np.float32)
    ch4[1] = 0.0
    batch = {"co2": co2, "ch4": ch4, "modality_mask": mask}
    for item in real or []:
        for key in batch:
            batch[key] = np.concatenate([batch[key], item[key]])
    return batch


@dataclass
class ParityReport:
    max_abs_diff: dict[str, float]
    argmax_agreement: dict[str, float]
    # max |diff| / (PARITY_MAX_ABS_DIFF x max(1, max |torch logit|)) per output: <= 1 passes.
    tolerance_used: dict[str, float]

    @property
    def ok(self) -> bool:
        return (
            all(t <= 1.0 for t in self.tolerance_used.values())
            and all(a >= PARITY_MIN_AGREEMENT for a in self.argmax_agreement.values())
        )

    def describe(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e} ({100 * self.tolerance_used[k]:.0f} % of its allowance)" for k, v in self.max_abs_diff.items())
        agree = ", ".join(f"{k} {100 * v:.3f} %" for k, v in self.argmax_agreement.items())
        return (
            f"max |torch - onnxruntime| of the logits: {diffs} (allowed {PARITY_MAX_ABS_DIFF:g} x max(1, largest |logit|)); "
            f"same argmax: {agree} (required {100 * PARITY_MIN_AGREEMENT:.1f} %)"
        )


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> ParityReport:
    """Largest absolute difference and argmax agreement (over pixels, or pairs for cls_logits) per output."""
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise FumeError(f"the ONNX model lacks output(s) {missing} that the PyTorch model produces")
    diffs, agreement, used = {}, {}, {}
    for name, ref in reference.items():
        got = candidate[name]
        if got.shape != ref.shape:
            raise FumeError(f"ONNX output {name} has shape {got.shape}, PyTorch {ref.shape}")
        diff = np.abs(got.astype(np.float64) - ref)
        diffs[name] = float(diff.max())
        used[name] = float(diff.max() / (PARITY_MAX_ABS_DIFF * max(1.0, float(np.abs(ref).max()))))
        agreement[name] = float((got.argmax(1) == ref.argmax(1)).mean())
    return ParityReport(diffs, agreement, used)


def check_parity(model: Any, backend: OnnxBackend, size: tuple[int, int], real: list[dict[str, np.ndarray]] | None = None) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same batch; FumeError with the figures if they disagree."""
    import torch

    batch = parity_inputs(size, real)
    with torch.inference_mode():
        reference = {k: v.float().numpy() for k, v in model.eval()(*(torch.from_numpy(batch[k]) for k in ("co2", "ch4", "modality_mask"))).items()}
    report = compare_outputs(reference, backend(batch["co2"], batch["ch4"], batch["modality_mask"]))
    if not report.ok:
        raise FumeError(f"ONNX export does not match PyTorch, nothing written: {report.describe()}")
    return report


def opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
