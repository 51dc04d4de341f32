"""The intensity window: how a frame of any bit depth (8-bit, 16-bit counts, float temperatures)
becomes the model's input in [0, 1] (settings: fume.config.FrameWindowConfig, `data.frame_window`).

Every path that feeds a model (training, evaluation, `fume predict`, export calibration, video)
windows frames through `window_frame`, with the recording's range from `recording_range` where the
mode needs one, so a frame means the same to the model wherever it comes from.

8-bit frames under the default `auto` mode stay uint8 (value / 255 later, exactly as before windows
existed); every other case gives float32 in [0, 1], clipped at the window's ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np

from fume.config import FrameWindowConfig
from fume.errors import DataError

# A recording's percentiles come from up to this many frames spread evenly over it, every
# PIXEL_STRIDE-th pixel in each direction: the range of a whole recording in a fraction of a second.
RECORDING_SAMPLE_FRAMES = 32
PIXEL_STRIDE = 4

Range = tuple[float, float]
T = TypeVar("T")


def is_8bit(frame: np.ndarray) -> bool:
    return frame.dtype == np.uint8


def needs_recording_range(window: FrameWindowConfig, frame_is_8bit: bool) -> bool:
    """True when frames in this mode are windowed by their recording's percentiles."""
    return window.mode == "percentile" or (window.mode == "auto" and not frame_is_8bit)


def sample_evenly(items: Sequence[T], n: int = RECORDING_SAMPLE_FRAMES) -> list[T]:
    """Up to `n` items spread evenly over `items`, first and last included."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))]


def recording_range(frames: Iterable[np.ndarray], window: FrameWindowConfig, what: str = "recording") -> Range:
    """The window's [low, high] percentiles of the pooled pixels of `frames` (a recording's sample,
    see sample_evenly). DataError naming `what` when the recording holds a single intensity."""
    pixels = [np.asarray(f)[::PIXEL_STRIDE, ::PIXEL_STRIDE].ravel() for f in frames]
    if not pixels:
        raise DataError(f"{what} has no frames to take an intensity window from")
    low, high = (float(v) for v in np.percentile(np.concatenate(pixels).astype(np.float64), window.percentiles))
    return _checked((low, high), f"{what} (percentiles {window.percentiles[0]:g}-{window.percentiles[1]:g})")


def _checked(bounds: Range, what: str) -> Range:
    low, high = bounds
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        raise DataError(f"{what} has intensity range [{low:g}, {high:g}]: a blank frame or recording cannot be windowed to the model's input")
    return bounds


def frame_bounds(frame: np.ndarray, window: FrameWindowConfig, frame_range: Range | None = None, what: str = "frame") -> Range | None:
    """The [low, high] a frame is windowed with; None for an 8-bit frame kept as stored (`auto`)."""
    if window.mode == "fixed":
        return window.range
    if window.mode == "minmax":
        return _checked((float(np.min(frame)), float(np.max(frame))), what)
    if not needs_recording_range(window, is_8bit(frame)):
        return None
    # No recording given (a single frame or array): the frame is its own recording.
    return frame_range if frame_range is not None else recording_range([frame], window, what)


def window_frame(frame: np.ndarray, window: FrameWindowConfig, frame_range: Range | None = None, what: str = "frame") -> np.ndarray:
    """A frame as the model sees it: uint8 unchanged (`auto`, 8-bit) or float32 in [0, 1]."""
    bounds = frame_bounds(frame, window, frame_range, what)
    if bounds is None:
        return frame
    low, high = bounds
    scaled = (frame.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def to_display(windowed: np.ndarray) -> np.ndarray:
    """A windowed frame as 8-bit gray, for overlays and figures."""
    if is_8bit(windowed):
        return windowed
    return np.rint(windowed * 255.0).astype(np.uint8)


def recording_key(gas: str, recording: str) -> str:
    """How a recording of one gas is named (in error messages too): 'REC (CO2)'."""
    return f"{recording} ({gas.upper()})"


def recording_ranges(
    recordings: dict[str, list[T]], window: FrameWindowConfig, read: Callable[[T], np.ndarray], first_is_8bit: Callable[[T], bool]
) -> dict[str, Range]:
    """{recording key: range} for the recordings whose frames need one (mode `percentile`, or
    `auto` with frames that are not 8-bit, judged by the first frame). `recordings` maps a key to
    the recording's frames in time order; `read` loads one."""
    ranges = {}
    for key, items in recordings.items():
        if items and needs_recording_range(window, first_is_8bit(items[0])):
            ranges[key] = recording_range((read(item) for item in sample_evenly(items)), window, f"recording {key}")
    return ranges
