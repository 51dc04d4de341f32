"""Inference backends: a PyTorch module or an ONNX Runtime session behind one call,
backend(co2, ch4, modality_mask) -> {output name: float32 numpy array}.

Inputs are numpy float32: co2 and ch4 (B, 1, H, W) in [0, 1], modality_mask (B, 2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fume.contract import CLS_OUTPUT, INPUT_NAMES, OUTPUT_NAMES
from fume.errors import FumeError

# Keys of the metadata FUME writes into its ONNX files (fume.inference.onnx.add_metadata).
META_CONFIG = "fume.config"
META_IMAGE_SIZE = "fume.image_size"


class TorchBackend:
    """A registry model in eval mode, run under torch.inference_mode. With `optimize` (default),
    batch norm is folded into the convolutions and tensors are channels_last
    (fume.models.prepare.prepare_for_inference: same outputs up to float rounding, about 2x faster)."""

    name = "torch"

    def __init__(self, model: Any, device: str = "cpu", optimize: bool = True) -> None:
        import torch

        from fume.models.prepare import prepare_for_inference

        self.torch = torch
        self.device = torch.device(device)
        self.channels_last = optimize
        self.model = (prepare_for_inference(model) if optimize else model).to(self.device).eval()

    def __call__(self, co2: np.ndarray, ch4: np.ndarray, modality_mask: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        with torch.inference_mode():
            inputs = [torch.from_numpy(a).to(self.device) for a in (co2, ch4, modality_mask)]
            inputs[0], inputs[1] = inputs[0].contiguous(memory_format=fmt), inputs[1].contiguous(memory_format=fmt)
            outputs = self.model(*inputs)
            return {k: v.float().cpu().numpy() for k, v in outputs.items()}


def session_options(threads: int | None = None, spinning: bool = False, profile_prefix: str | None = None):
    """ONNX Runtime options: all graph optimisations (BN folding, conv fusions), `threads` intra-op
    threads, and thread spinning off by default: spinning threads of two sessions (or of a session
    and a busy neighbour process) steal each other's cores on a small CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


class OnnxBackend:
    """An ONNX Runtime CPU session on a FUME ONNX file (or its bytes), inputs checked on load, and
    FUME's metadata checked against the graph (check_onnx_metadata): a file whose stored class
    names or frame size disagree with its outputs or inputs is refused, not trusted."""

    name = "onnxruntime"

    def __init__(
        self, model: str | os.PathLike | bytes, threads: int | None = None, spinning: bool = False, source: str | None = None,
        profile_prefix: str | None = None, check_io: bool = True,
    ) -> None:
        import onnxruntime as ort

        self.source = source or (str(model) if not isinstance(model, bytes) else "ONNX model")
        if not isinstance(model, bytes):
            path = Path(model)
            if not path.is_file():
                raise FumeError(f"ONNX file not found: {path}")
            model = str(path)
        try:
            self.session = ort.InferenceSession(model, session_options(threads, spinning, profile_prefix), providers=["CPUExecutionProvider"])
        except Exception as err:  # not an ONNX file, truncated, unsupported operators
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise FumeError(f"cannot load ONNX model {self.source}: {first}") from None
        # check_io=False only for non-FUME graphs timed beside it (the benchmark's reference model).
        self.image_size = check_onnx_io(self.session, self.source) if check_io else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.num_classes = cls_dimension(self.session)
        if check_io:
            check_onnx_metadata(self, self.source)

    def __call__(self, co2: np.ndarray, ch4: np.ndarray, modality_mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"co2": np.ascontiguousarray(co2, np.float32), "ch4": np.ascontiguousarray(ch4, np.float32),
                 "modality_mask": np.ascontiguousarray(modality_mask, np.float32)}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def stored_config(self) -> dict[str, Any] | None:
        """The FUME configuration written into the file at export, if any; FumeError when it is not
        a JSON object."""
        raw = self.metadata.get(META_CONFIG)
        if not raw:
            return None
        try:
            stored = json.loads(raw)
        except json.JSONDecodeError as err:
            raise FumeError(f"ONNX model {self.source}: metadata {META_CONFIG!r} is not valid JSON ({err})") from None
        if not isinstance(stored, dict):
            raise FumeError(f"ONNX model {self.source}: metadata {META_CONFIG!r} is a JSON {type(stored).__name__}; expected an object")
        return stored

    def stored_labels(self) -> Any:
        """The class names and pH mapping stored in the file (fume.config.LabelConfig), or None;
        FumeError naming the file when they are not a valid `data.labels` section."""
        from pydantic import ValidationError

        from fume.config import LabelConfig

        stored = self.stored_config() or {}
        data = stored.get("data")
        labels = data.get("labels") if isinstance(data, dict) else None
        if data is not None and not isinstance(data, dict):
            raise FumeError(f"ONNX model {self.source}: metadata {META_CONFIG!r} has a 'data' {type(data).__name__}; expected an object")
        if labels is None:
            return None
        if not isinstance(labels, dict):
            raise FumeError(f"ONNX model {self.source}: stored data.labels is a {type(labels).__name__}; expected an object")
        try:
            return LabelConfig(**labels)
        except (ValidationError, TypeError) as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'labels'}: {e['msg']}" for e in getattr(err, "errors", lambda: [])()
            ) or str(err).splitlines()[0]
            raise FumeError(f"ONNX model {self.source}: stored data.labels is not a valid label section ({problems})") from None

    def end_profiling(self) -> str:
        return self.session.end_profiling()


def cls_dimension(session: Any) -> int | None:
    """The class dimension of the cls_logits output (B, C), None without one or when it is not fixed."""
    for output in session.get_outputs():
        if output.name == CLS_OUTPUT:
            shape = output.shape
            return int(shape[-1]) if shape and isinstance(shape[-1], int) else None
    return None


def check_onnx_metadata(backend: OnnxBackend, source: str) -> None:
    """FUME's metadata must agree with the graph: the stored config is a JSON object, its labels a
    valid LabelConfig with as many class names as cls_logits has classes, and the stored frame size
    (fume.image_size and data.image_size) that of the inputs. FumeError naming the file otherwise."""
    labels = backend.stored_labels()
    if labels is not None:
        check_class_count(backend, labels.num_classes, "stored class names " + str(labels.class_names))
    width, height = backend.image_size
    raw = backend.metadata.get(META_IMAGE_SIZE)
    if raw is not None:
        parts = raw.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise FumeError(f"ONNX model {source}: metadata {META_IMAGE_SIZE!r} = {raw!r} is not WIDTHxHEIGHT")
        if (int(parts[0]), int(parts[1])) != (width, height):
            raise FumeError(
                f"ONNX model {source}: metadata {META_IMAGE_SIZE!r} = {raw!r} but its inputs are {width}x{height} (W x H)"
            )
    data = (backend.stored_config() or {}).get("data")
    size = data.get("image_size") if isinstance(data, dict) else None
    if size is not None and (not isinstance(size, list) or size != [width, height]):
        raise FumeError(f"ONNX model {source}: stored data.image_size = {size!r} but its inputs are {width}x{height} (W x H)")


def check_class_count(backend: OnnxBackend, count: int, what: str) -> None:
    """FumeError when `count` class names are given for a model whose cls_logits has another number."""
    if backend.num_classes is not None and count != backend.num_classes:
        raise FumeError(
            f"ONNX model {backend.source}: {count} {what} but output {CLS_OUTPUT} has {backend.num_classes} classes"
        )


def check_onnx_io(session: Any, source: str) -> tuple[int, int]:
    """Check a session has FUME's inputs and outputs; returns the frame size (W, H) it was exported at."""
    expected = "inputs co2 (B, 1, H, W), ch4 (B, 1, H, W), modality_mask (B, 2) of float32"
    inputs = {i.name: i for i in session.get_inputs()}
    if set(inputs) != set(INPUT_NAMES):
        raise FumeError(f"ONNX model {source} has inputs {sorted(inputs)}; a FUME model needs {expected}")
    shapes = {name: i.shape for name, i in inputs.items()}
    co2, ch4, mask = shapes["co2"], shapes["ch4"], shapes["modality_mask"]
    types_ok = all(i.type == "tensor(float)" for i in inputs.values())
    fixed = lambda dims: all(isinstance(d, int) for d in dims)  # noqa: E731
    if (
        not types_ok or len(co2) != 4 or co2 != ch4 or co2[1] != 1 or not fixed(co2[2:])
        or len(mask) != 2 or mask[1] != 2
    ):
        found = ", ".join(f"{n} {shapes[n]} {inputs[n].type}" for n in INPUT_NAMES)
        raise FumeError(f"ONNX model {source} has inputs {found}; expected {expected} with fixed H and W")
    outputs = [o.name for o in session.get_outputs()]
    unknown = [o for o in outputs if o not in OUTPUT_NAMES]
    if unknown or not outputs:
        raise FumeError(f"ONNX model {source} has outputs {outputs}; expected some of {list(OUTPUT_NAMES)}")
    return int(co2[3]), int(co2[2])
