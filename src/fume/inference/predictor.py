"""The prediction API: a CO2 and/or a CH4 frame in, class, pH range, probabilities and per-gas
masks at the frames' own resolution out.

    predictor = Predictor.from_checkpoint("runs/fume/checkpoints/best.ckpt")   # or backend="onnxruntime"
    result = predictor.predict(co2="co2.png", ch4="ch4.png")
    result.class_name, result.probabilities, result.gases["co2"].mask, result.to_dict()

Frames are windowed to the model's input range (data.frame_window, fume.data.window) and resized
to the model's size (fume.data.frames, as in training); the segmentation logits are resized back bilinearly and the mask is their argmax. This is
the one inference path: `fume evaluate`, `fume predict`, video and export's accuracy check all run
their backend through a Predictor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from fume.config import FrameWindowConfig, FumeConfig, LabelConfig
from fume.contract import CLS_OUTPUT, GAS, GASES, SEG_OUTPUTS, TUBE
from fume.data.frames import load_frame, windowed_to_input
from fume.data.window import Range, to_display, window_frame
from fume.errors import ConfigError, DataError, FumeError

FrameInput = Union[str, os.PathLike, np.ndarray, None]

# A tube counts as found when at least this fraction of the frame is predicted as tube (0.05 %:
# ~150 px at 640x480, where a real outlet covers about 600 px or more); fewer pixels are noise.
TUBE_MIN_FRACTION = 5e-4
BACKENDS = ("torch", "onnxruntime")


@dataclass
class GasResult:
    """One gas of a pair. `frame` (as read: 8-bit, 16-bit or float), `display` (the frame through
    the model's intensity window, 8-bit, for overlays) and `mask` are at the frame's native size;
    `mask` is None when the gas is absent or the model does not segment."""

    present: bool
    source: str | None = None
    frame: np.ndarray | None = None
    mask: np.ndarray | None = None
    display: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        if not self.present or self.frame is None:
            return {"present": False}
        h, w = self.frame.shape
        out: dict[str, Any] = {"present": True, "source": self.source, "width": w, "height": h}
        if self.mask is not None:
            gas_px = int((self.mask == GAS).sum())
            tube_px = int((self.mask == TUBE).sum())
            out.update(
                plume_area_px=gas_px,
                plume_area_percent=round(100.0 * gas_px / (h * w), 4),
                tube_found=bool(tube_px >= max(1.0, TUBE_MIN_FRACTION * h * w)),
                tube_area_px=tube_px,
            )
        return out


@dataclass
class PairPrediction:
    sample_id: str
    gases: dict[str, GasResult]
    probabilities: np.ndarray | None  # (num_classes,), None for a segmentation-only model
    label_config: LabelConfig = field(default_factory=LabelConfig)

    @property
    def class_id(self) -> int | None:
        return None if self.probabilities is None else int(np.argmax(self.probabilities))

    @property
    def class_name(self) -> str | None:
        cid = self.class_id
        return None if cid is None else self.label_config.class_names[cid]

    @property
    def modality_mask(self) -> list[float]:
        return [float(self.gases[g].present) for g in GASES]

    def to_dict(self) -> dict[str, Any]:
        """The per-pair JSON: class, pH range of the class, probabilities, per-gas plume area and tube."""
        cid = self.class_id
        names = self.label_config.class_names
        return {
            "sample_id": self.sample_id,
            "class_id": cid,
            "class_name": self.class_name,
            "ph_range": ph_range(self.label_config, cid) if cid is not None else None,
            "probabilities": None if self.probabilities is None else {n: float(p) for n, p in zip(names, self.probabilities)},
            "modality_mask": self.modality_mask,
            "gases": {g: self.gases[g].summary() for g in GASES},
        }


def ph_range(label_config: LabelConfig, class_id: int) -> dict[str, Any]:
    """The pH levels mapped to a class: {"min", "max", "levels"} (levels high to low)."""
    levels = label_config.phs_of_class(class_id)
    if not levels:
        return {"min": None, "max": None, "levels": []}
    return {"min": min(levels), "max": max(levels), "levels": levels}


FRAME_DTYPES = (np.uint8, np.uint16, np.float32)


def load_gray(frame: FrameInput, gas: str) -> tuple[np.ndarray, str | None]:
    """((H, W) gray frame as fume.data.frames.load_frame returns it, its source path) from a path or an array."""
    if isinstance(frame, np.ndarray):
        if frame.ndim != 2 or frame.dtype not in FRAME_DTYPES:
            raise DataError(
                f"{gas.upper()} frame array has shape {frame.shape} and dtype {frame.dtype}; expected (H, W) gray uint8, uint16 or float32"
            )
        return frame, None
    return load_frame(frame), str(frame)


def native_mask(logits: np.ndarray, native_hw: tuple[int, int]) -> np.ndarray:
    """(C, h, w) logits -> uint8 (H, W) labels at the native size: bilinear on the logits (pixel
    centres aligned, PyTorch's align_corners=False), then argmax. Where PyTorch is not installed
    (an ONNX-only runtime) OpenCV resizes: its float weights differ from PyTorch's by up to ~2e-4,
    so only a pixel whose two best classes are closer than that can get the other label."""
    if tuple(logits.shape[-2:]) == tuple(native_hw):
        return channel_argmax(logits)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        import cv2

        h, w = native_hw
        resized = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0), np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return channel_argmax(resized.reshape(h, w, -1).transpose(2, 0, 1))
    resized = F.interpolate(torch.from_numpy(logits)[None].float(), size=tuple(native_hw), mode="bilinear", align_corners=False)
    return resized.argmax(1)[0].numpy().astype(np.uint8)


def channel_argmax(logits: np.ndarray) -> np.ndarray:
    """argmax over the first axis of (C, H, W) as uint8 labels (ties to the lower class, as
    np.argmax): one comparison per class, about twice as fast as np.argmax(0) for a few classes."""
    labels = np.zeros(logits.shape[1:], np.uint8)
    best = logits[0].copy()
    for c in range(1, logits.shape[0]):
        labels[logits[c] > best] = c
        np.maximum(best, logits[c], out=best)
    return labels


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float32 (NumPy: no PyTorch needed to run an ONNX model)."""
    x = np.asarray(logits, np.float32)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class Predictor:
    """Runs a FUME model (through `backend`) on pairs of frames of any size."""

    def __init__(
        self, backend: Any, image_size: tuple[int, int], label_config: LabelConfig | None = None, source: str = "model",
        temperature: float = 1.0, frame_window: FrameWindowConfig | None = None,
    ) -> None:
        self.backend = backend
        self.frame_window = frame_window or FrameWindowConfig()  # data.frame_window of the training config
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.label_config = label_config or LabelConfig()
        self.source = source
        # Temperature scaling (testing.temperature of the stored config): class logits / T before softmax.
        self.temperature = float(temperature)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | os.PathLike, backend: str = "torch", threads: int | None = None, device: str = "cpu"
    ) -> Predictor:
        """A checkpoint written by `fume train`. backend "onnxruntime" exports the model to ONNX in memory."""
        from fume.models.checkpoint import load_model_from_checkpoint

        model, config = load_model_from_checkpoint(checkpoint)
        return cls.from_model(model, config, backend, threads, device, source=str(checkpoint))

    @classmethod
    def from_model(
        cls, model: Any, config: FumeConfig, backend: str = "torch", threads: int | None = None, device: str = "cpu",
        source: str = "model",
    ) -> Predictor:
        """A trained network and the configuration it was trained with (frame size, class names)."""
        from fume.inference.backends import OnnxBackend, TorchBackend

        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        size = tuple(config.data.image_size)
        if backend == "torch":
            if threads is not None:
                import torch

                torch.set_num_threads(int(threads))
            runner: Any = TorchBackend(model, device=device)
        else:
            from fume.inference.onnx import onnx_bytes

            runner = OnnxBackend(onnx_bytes(model, config, size), threads=threads, source=f"{source} (exported)")
        return cls(runner, size, config.data.labels, source=source, temperature=config.testing.temperature, frame_window=config.data.frame_window)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, threads: int | None = None, label_config: LabelConfig | None = None) -> Predictor:
        """An ONNX file written by `fume export` (its class names and pH mapping are stored in it).
        The metadata is checked against the graph on load (backends.check_onnx_metadata), and the
        class names used, stored or given, must number as many as the model's classes: FumeError."""
        from fume.inference.backends import OnnxBackend, check_class_count

        backend = OnnxBackend(path, threads=threads)
        if label_config is None:
            stored = backend.stored_labels()
            label_config = stored or LabelConfig()
            what = "stored class names" if stored is not None else "class names (the defaults: the file stores none)"
        else:
            what = "class names given"
        check_class_count(backend, label_config.num_classes, f"{what} {label_config.class_names}")
        return cls(
            backend, backend.image_size, label_config, source=str(path), temperature=stored_temperature(backend),
            frame_window=stored_frame_window(backend),
        )

    def predict(
        self, co2: FrameInput = None, ch4: FrameInput = None, sample_id: str | None = None,
        ranges: tuple[Range | None, Range | None] = (None, None),
    ) -> PairPrediction:
        """One pair; either frame may be None (that gas is then absent from the modality mask).
        `ranges`: the CO2 and CH4 recordings' intensity ranges, as in predict_batch."""
        return self.predict_batch([(co2, ch4, sample_id)], ranges=[ranges])[0]

    def predict_batch(
        self, pairs: Sequence[tuple[FrameInput, FrameInput, str | None]], sources: Sequence[tuple[str | None, str | None]] | None = None,
        ranges: Sequence[tuple[Range | None, Range | None]] | None = None,
    ) -> list[PairPrediction]:
        """Several pairs in one forward pass (the ONNX model has a dynamic batch dimension). `sources`
        names the files of frames given as arrays (for results and error messages); `ranges` gives
        each frame's recording range (fume.data.window.recording_range) where the intensity window
        needs one; without it a frame is its own recording."""
        sources = sources or [(None, None)] * len(pairs)
        ranges = ranges or [(None, None)] * len(pairs)
        loaded = [self._load_pair(co2, ch4, sample_id, i, src) for i, ((co2, ch4, sample_id), src) in enumerate(zip(pairs, sources))]
        width, height = self.image_size
        inputs = {g: np.zeros((len(loaded), 1, height, width), np.float32) for g in GASES}
        modality = np.zeros((len(loaded), 2), np.float32)
        for i, (_, gases) in enumerate(loaded):
            for g, gas in enumerate(GASES):
                if gases[gas].present:
                    result = gases[gas]
                    windowed = window_frame(result.frame, self.frame_window, ranges[i][g], f"{gas.upper()} frame {result.source or 'array'}")
                    result.display = to_display(windowed)
                    inputs[gas][i, 0] = windowed_to_input(windowed, self.image_size)
                    modality[i, g] = 1.0
        outputs = self.backend(inputs["co2"], inputs["ch4"], modality)
        probs = softmax(outputs[CLS_OUTPUT] / self.temperature) if CLS_OUTPUT in outputs else None
        results = []
        for i, (sample_id, gases) in enumerate(loaded):
            for gas in GASES:
                key = SEG_OUTPUTS[gas]
                if gases[gas].present and key in outputs:
                    gases[gas].mask = native_mask(outputs[key][i], gases[gas].frame.shape)
            results.append(PairPrediction(sample_id, gases, None if probs is None else probs[i], self.label_config))
        return results

    def _load_pair(
        self, co2: FrameInput, ch4: FrameInput, sample_id: str | None, index: int, sources: tuple[str | None, str | None] = (None, None)
    ) -> tuple[str, dict[str, GasResult]]:
        if co2 is None and ch4 is None:
            raise DataError(f"pair {sample_id or index} has neither a CO2 nor a CH4 frame; give at least one")
        gases: dict[str, GasResult] = {}
        for gas, frame, known_source in (("co2", co2, sources[0]), ("ch4", ch4, sources[1])):
            if frame is None:
                gases[gas] = GasResult(present=False)
            else:
                array, source = load_gray(frame, gas)
                gases[gas] = GasResult(present=True, source=source or known_source, frame=array)
        if co2 is not None and ch4 is not None and gases["co2"].frame.shape != gases["ch4"].frame.shape:
            (h1, w1), (h2, w2) = gases["co2"].frame.shape, gases["ch4"].frame.shape
            raise DataError(
                f"CO2 frame {gases['co2'].source or 'array'} is {w1}x{h1} but CH4 frame {gases['ch4'].source or 'array'} "
                f"is {w2}x{h2}; the two frames of a pair must have the same size"
            )
        if sample_id is None:
            sample_id = default_sample_id(gases["co2"].source, gases["ch4"].source, index)
        return sample_id, gases


def stored_temperature(backend: Any) -> float:
    """The temperature in an ONNX file's stored config (testing.temperature), 1.0 when it has none."""
    testing = (backend.stored_config() or {}).get("testing")
    value = testing.get("temperature", 1.0) if isinstance(testing, dict) else 1.0
    if not isinstance(value, (int, float)) or not value > 0:
        raise FumeError(f"ONNX model {backend.source}: stored testing.temperature {value!r} is not a positive number")
    return float(value)


def stored_frame_window(backend: Any) -> FrameWindowConfig:
    """The intensity window in an ONNX file's stored config (data.frame_window); `auto` when it has none."""
    data = (backend.stored_config() or {}).get("data")
    value = data.get("frame_window") if isinstance(data, dict) else None
    try:
        return FrameWindowConfig.model_validate(value) if value is not None else FrameWindowConfig()
    except ValueError as err:
        raise FumeError(f"ONNX model {backend.source}: stored data.frame_window {value!r} is invalid: {err}") from None


def default_sample_id(co2: str | None, ch4: str | None, index: int = 0) -> str:
    """A name for a pair from its files: the CO2 file's stem with the gas word dropped, else the CH4 one's."""
    import re

    for path in (co2, ch4):
        if path:
            stem = re.sub(r"(?i)[_\-. ]?(co2|ch4)(?=[_\-. ]|$)", "", Path(path).stem).strip("_-. ")
            return stem or Path(path).stem
    return f"pair{index:05d}"


