"""Video mode: a CO2 and/or a CH4 recording (a video file read with PyAV, or a folder of frames)
-> per-frame predictions with temporally smoothed class probabilities and an annotated video.

OUT/
  video_predictions.csv   frame, time_s, raw and smoothed class probabilities and class, plume
                          areas and tube found per gas
  annotated.mp4           the overlays of both gases side by side, smoothed class in the corner

Smoothing: an exponential moving average of the class probabilities,
    smoothed[t] = EMA_ALPHA * p[t] + (1 - EMA_ALPHA) * smoothed[t - 1],   smoothed[0] = p[0].
With EMA_ALPHA = 0.1 a frame's weight halves after ~6.6 frames (0.22 s at 30 fps): a one-frame
misclassification cannot flip the smoothed class, a real change shows within a few tenths of a second.

Frame i of the CO2 source is paired with frame i of the CH4 source (the two gases are filmed
through separate filters, not at the same instant); the shorter source ends the run.

The stages overlap: a reader thread decodes the next pair of frames and a writer thread draws and
encodes the previous one while the model runs on the current one (PyAV, OpenCV and ONNX Runtime
release the GIL while they work); VideoResult.times gives each stage's time. write_video=False
(`fume predict --no-video-output`) skips drawing and encoding for headless use.

Like batch mode (fume.inference.batch), everything is staged and moved into OUT at the end, and
OUT holds one run's results: an earlier prediction run's outputs there are replaced
(predict_video's default) or refused without `overwrite` (`fume predict` without --overwrite).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fume.contract import GASES, key_name
from fume.data.recordings import DEFAULT_FPS, FrameSource  # noqa: F401  (re-exported: video mode reads sources with it)
from fume.errors import ConfigError, DataError
from fume.inference.batch import PREDICT_OUTPUTS, check_output_folder, csv_row, describe_class, remove_earlier_outputs
from fume.inference.overlay import overlay, side_by_side, text_panel
from fume.inference.predictor import PairPrediction, Predictor
from fume.io import VideoWriter, staged_dir, write_csv

EMA_ALPHA = 0.1
DRAW_AHEAD = 4  # annotated frames that may wait for the encoder thread
VIDEO_NAME = "annotated.mp4"
CSV_NAME = "video_predictions.csv"


class ExponentialMovingAverage:
    """EMA of probability vectors; the first value starts the average."""

    def __init__(self, alpha: float = EMA_ALPHA) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.value: np.ndarray | None = None

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        p = np.asarray(probabilities, np.float64)
        self.value = p.copy() if self.value is None else self.alpha * p + (1.0 - self.alpha) * self.value
        return self.value


@dataclass
class StageTimes:
    """Seconds spent in each stage of the video path, summed over the frames. Decoding runs in a
    reader thread and annotating + encoding in a writer thread, both overlapping inference, so
    the stages add up to more than the run's wall time when the overlap works."""

    decode: float = 0.0  # reading both sources (PyAV, image files) and pairing the frames
    predict: float = 0.0  # pre-processing, the model, masks at native size, smoothing, the CSV row
    annotate: float = 0.0  # overlays of both gases and the status strip
    encode: float = 0.0  # H.264 encoding of annotated.mp4
    wall: float = 0.0  # the whole run, CSV included

    def describe(self, frames: int) -> str:
        per = lambda seconds: 1000.0 * seconds / max(frames, 1)  # noqa: E731
        stages = ", ".join(f"{name} {per(getattr(self, name)):.1f}" for name in ("decode", "predict", "annotate", "encode"))
        return f"{frames / self.wall if self.wall else 0.0:.1f} pairs/s; ms per pair: {stages} (overlapping), wall {per(self.wall):.1f}"


@dataclass
class VideoResult:
    out_dir: Path
    csv_path: Path
    video_path: Path | None
    frames: int
    fps: float
    unused_frames: dict[str, int]
    times: StageTimes = field(default_factory=StageTimes)


def annotate(pred: PairPrediction, smoothed: np.ndarray | None, time: float, labels: list[str]) -> np.ndarray:
    panels = []
    data = pred.to_dict()
    for gas in GASES:
        result = pred.gases[gas]
        if not result.present:
            continue
        summary = data["gases"][gas]
        lines = [gas.upper()]
        if "plume_area_percent" in summary:
            lines.append(f"plume {summary['plume_area_percent']:.1f}%  tube {'yes' if summary['tube_found'] else 'no'}")
        panels.append(overlay(result.display, result.mask, lines))
    image = side_by_side(panels)
    status = [f"t = {time:6.2f} s"]
    if smoothed is not None:
        k = int(np.argmax(smoothed))
        status.insert(0, f"{labels[k]} {100 * smoothed[k]:.0f}% (smoothed)")
        status.append(f"this frame: {describe_class(pred)}")
    # The status goes in a strip below, so it covers neither the frames nor the per-gas labels.
    return np.ascontiguousarray(np.concatenate([image, text_panel(status, image.shape[1], image.shape[0])], axis=0))


def predict_video(
    predictor: Predictor,
    out: str | os.PathLike,
    co2: str | os.PathLike | None = None,
    ch4: str | os.PathLike | None = None,
    fps: float | None = None,
    ema_alpha: float = EMA_ALPHA,
    write_video: bool = True,
    max_frames: int | None = None,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = True,
) -> VideoResult:
    """Run the predictor on every frame of the sources and write OUT's files (module docstring).
    An earlier run's outputs in OUT are replaced, or with overwrite=False refused (ConfigError)."""
    import pandas as pd

    if co2 is None and ch4 is None:
        raise ConfigError("video mode needs --co2-video and/or --ch4-video")
    sources = {gas: FrameSource(path, fps) for gas, path in (("co2", co2), ("ch4", ch4)) if path is not None}
    rate = next(iter(sources.values())).fps
    # Each source is one recording: its intensity range (where the window needs one) from frames spread over it.
    ranges = tuple(sources[gas].window_range(predictor.frame_window) if gas in sources else None for gas in GASES)
    ema = ExponentialMovingAverage(ema_alpha)
    labels = list(predictor.label_config.class_names)
    out = Path(out)
    check_output_folder(out, PREDICT_OUTPUTS, overwrite)
    rows: list[dict[str, Any]] = []
    unused = {gas: 0 for gas in sources}
    times = StageTimes()
    iterators = {gas: iter(src) for gas, src in sources.items()}

    def read_next() -> tuple[float, dict[str, np.ndarray]] | None:
        """The next pair of frames (decoded in the reader thread), None at the end of a source."""
        start = time.perf_counter()
        frames = {gas: next(it, None) for gas, it in iterators.items()}
        if any(f is None for f in frames.values()):
            unused.update({gas: int(f is not None) + sum(1 for _ in iterators[gas]) for gas, f in frames.items()})
            frames = None
        times.decode += time.perf_counter() - start
        return None if frames is None else (next(iter(frames.values()))[0], {gas: f[1] for gas, f in frames.items()})

    def draw(pred: PairPrediction, smoothed: np.ndarray | None, at: float) -> None:
        start = time.perf_counter()
        image = annotate(pred, smoothed, at, labels)
        middle = time.perf_counter()
        writer.write(image)
        times.annotate += middle - start
        times.encode += time.perf_counter() - middle

    began = time.perf_counter()
    with staged_dir(out) as staging, ThreadPoolExecutor(1, "fume-decode") as reader, ThreadPoolExecutor(1, "fume-encode") as drawer:
        writer = VideoWriter(staging / VIDEO_NAME, rate) if write_video else None
        drawing: deque[Future] = deque()
        try:
            # Decoding frame i + 1 and drawing/encoding frame i - 1 overlap the inference of frame i.
            upcoming = reader.submit(read_next) if max_frames is None or max_frames > 0 else None
            index = 0
            while upcoming is not None:
                item = upcoming.result()
                if item is None:
                    break
                upcoming = reader.submit(read_next) if max_frames is None or index + 1 < max_frames else None
                at, arrays = item
                if len(arrays) == 2 and arrays["co2"].shape != arrays["ch4"].shape:
                    (h1, w1), (h2, w2) = arrays["co2"].shape, arrays["ch4"].shape
                    raise DataError(
                        f"frame {index}: CO2 source {sources['co2'].path} is {w1}x{h1} but CH4 source "
                        f"{sources['ch4'].path} is {w2}x{h2}; both recordings must have the same frame size"
                    )
                start = time.perf_counter()
                pred = predictor.predict(arrays.get("co2"), arrays.get("ch4"), sample_id=f"frame{index:06d}", ranges=ranges)
                for gas in sources:
                    pred.gases[gas].source = f"{sources[gas].path}#{index}"
                smoothed = ema.update(pred.probabilities) if pred.probabilities is not None else None
                row = {"frame": index, "time_s": round(at, 6)}
                row.update({k: v for k, v in csv_row(None, pred, {}).items() if not k.endswith("_frame") and k != "sample_id"})
                if smoothed is not None:
                    for name, p in zip(labels, smoothed):
                        row[f"smoothed_prob_{key_name(name)}"] = float(p)
                    row["smoothed_class_id"] = int(np.argmax(smoothed))
                    row["smoothed_class_name"] = labels[int(np.argmax(smoothed))]
                rows.append(row)
                times.predict += time.perf_counter() - start
                if writer is not None:
                    drawing.append(drawer.submit(draw, pred, smoothed, at))
                    while len(drawing) > DRAW_AHEAD:  # bounded: memory stays flat on long recordings
                        drawing.popleft().result()
                index += 1
                if progress is not None:
                    progress(1)
            while drawing:
                drawing.popleft().result()
        except BaseException:
            for future in drawing:
                future.cancel()
            wait(list(drawing))
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()
        if not rows:
            raise DataError("no frame was read from the video source(s)")
        write_csv(staging / CSV_NAME, pd.DataFrame(rows))
        remove_earlier_outputs(out, PREDICT_OUTPUTS)
    times.wall = time.perf_counter() - began
    return VideoResult(out, out / CSV_NAME, out / VIDEO_NAME if write_video else None, len(rows), rate, unused, times)
