"""Recordings: reading a video file (PyAV), a FLIR SEQ/FFF sequence (fume.data.flir) or a folder of
frames as gray frames with their times (FrameSource, also used by video-mode inference), and importing a recording into FUME's dataset
layout (`fume import-recording`).

An imported recording's frames go to ROOT/recordings/<recording-id>/<gas>/frame_NNNNNN.png (NNNNNN:
the frame's index in the source; bit depth kept: 16-bit PNG for 16-bit frames, TIFF for float ones) and its rows into ROOT/annotations.csv: the class from the pH via
the label configuration, original_sample_id = the recording id, augmentation_id 0, timestamp = the
frame's time in seconds, animal_id when given, and an empty mask_path: the frames are unlabelled
(predicted by `fume predict`, left out of training with a count by `fume pair`, counted by
`fume validate-data`). Importing the same recording and gas again replaces its rows and frames.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fume.config import FrameWindowConfig, LabelConfig
from fume.contract import GASES
from fume.data.flir import FlirSequence, has_flir_data, is_flir_file, read_flir_still
from fume.data.frames import IMAGE_SUFFIXES, load_frame, write_frame
from fume.data.window import Range, is_8bit, needs_recording_range, recording_range, sample_evenly
from fume.errors import ConfigError, DataError

DEFAULT_FPS = 30.0  # for folders of frames, which carry no timing
RECORDINGS_DIR = "recordings"


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class FrameSource:
    """Gray frames with their time in seconds, from a video file (8-bit), a FLIR SEQ/FFF sequence
    (16-bit counts; fume.data.flir, the `flir` extra) or a folder of images (any bit depth
    fume.data.frames.load_frame reads). `radiometric`: temperatures in degrees C (float32) instead,
    from a FLIR sequence's calibration or from a folder's radiometric FLIR JPEGs (flyr)."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None, radiometric: bool = False) -> None:
        self.path = Path(path)
        self.radiometric = radiometric
        self.flir = None
        if not self.path.exists():
            raise DataError(f"video or frame folder not found: {self.path}")
        if fps is not None and fps <= 0:
            raise ConfigError(f"--fps must be positive, got {fps}")
        if self.path.is_file() and is_flir_file(self.path):
            self.files = None
            self.flir = FlirSequence(self.path, fps, temperature=radiometric)
            self.fps = float(self.flir.fps or DEFAULT_FPS)
        elif self.path.is_dir():
            self.files = sorted(
                (p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")), key=_natural_key
            )
            if not self.files:
                raise DataError(f"frame folder {self.path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.fps = float(fps or DEFAULT_FPS)
        else:
            if radiometric:
                raise ConfigError(f"{self.path}: temperatures (--radiometric) come from FLIR SEQ/FFF files or folders of radiometric JPEGs, not from a video")
            self.files = None
            self.fps = float(fps) if fps else self._video_fps()

    def _read_file(self, path: Path) -> np.ndarray:
        if self.radiometric:
            if not has_flir_data(path):
                raise DataError(f"frame {path} carries no FLIR radiometric data; --radiometric reads temperatures from FLIR JPEGs")
            return read_flir_still(path)
        return load_frame(path)

    def _open(self):
        import av

        try:
            return av.open(str(self.path))
        except Exception as err:  # av.error.* (invalid data, unknown format), OSError
            raise DataError(f"cannot open video {self.path}: {err}") from None

    def _video_fps(self) -> float:
        with self._open() as container:
            if not container.streams.video:
                raise DataError(f"{self.path} has no video stream")
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else DEFAULT_FPS

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        if self.flir is not None:
            yield from self.flir
            return
        if self.files is not None:
            for i, path in enumerate(self.files):
                yield i / self.fps, self._read_file(path)
            return
        with self._open() as container:
            if not container.streams.video:
                raise DataError(f"{self.path} has no video stream")
            stream = container.streams.video[0]
            index = 0
            try:
                for frame in container.decode(stream):
                    time = float(frame.time) if frame.time is not None else index / self.fps
                    yield time, frame.to_ndarray(format="gray")
                    index += 1
            except DataError:
                raise
            except Exception as err:  # av.error.InvalidDataError and friends: a damaged file
                raise DataError(f"cannot decode frame {index} of video {self.path}: {err}") from None
            if index == 0:
                raise DataError(f"video {self.path} holds no decodable frame")


    def frame_count(self) -> int:
        """How many frames the source holds (a video's stream header, else its packets counted, not decoded)."""
        if self.files is not None:
            return len(self.files)
        if self.flir is not None:
            return len(self.flir)
        with self._open() as container:
            stream = container.streams.video[0]
            return int(stream.frames) or sum(1 for packet in container.demux(stream) if packet.size)

    def window_range(self, window: FrameWindowConfig) -> Range | None:
        """The recording's intensity range where the window needs one (fume.data.window): frames
        spread evenly over the whole source, as for a recording in a dataset."""
        _, first = next(iter(self))
        if not needs_recording_range(window, is_8bit(first)):
            return None
        wanted = set(sample_evenly(range(self.frame_count())))
        frames = (frame for i, (_, frame) in enumerate(self) if i in wanted)
        return recording_range(frames, window, f"recording {self.path}")


@dataclass
class ImportResult:
    recording_id: str
    gas: str
    folder: Path
    frames: int
    replaced_rows: int
    annotations: Path


def import_recording(
    source: str | os.PathLike,
    root: str | os.PathLike,
    gas: str,
    ph: float,
    every: int = 1,
    start: float | None = None,
    end: float | None = None,
    recording_id: str | None = None,
    animal_id: str | None = None,
    label_config: LabelConfig | None = None,
    fps: float | None = None,
    progress: Callable[[int], None] | None = None,
    radiometric: bool = False,
) -> ImportResult:
    """Write every `every`-th frame of `source` with start <= time <= end (seconds) into `root`
    (module docstring) and return what was written. DataError/ConfigError before anything is
    written for a bad argument, an unknown pH or a missing source."""
    import pandas as pd

    from fume.data.layout import ANNOTATION_COLUMNS, ANNOTATIONS_FILE, WHO_WHEN_COLUMNS, check_recording_id, read_csv, recording_rows
    from fume.io import staged_dir, write_csv

    labels = label_config or LabelConfig()
    gas = str(gas).strip().lower()
    if gas not in GASES:
        raise ConfigError(f"--gas must be one of {list(GASES)}, got {gas!r}")
    if every < 1:
        raise ConfigError(f"--every must be at least 1, got {every}")
    if start is not None and start < 0:
        raise ConfigError(f"--start must not be negative, got {start}")
    if start is not None and end is not None and end < start:
        raise ConfigError(f"--end ({end}) is before --start ({start})")
    class_id = labels.class_of_ph(ph)  # DataError listing the configured levels
    frames = FrameSource(source, fps, radiometric)
    recording_id = check_recording_id(recording_id if recording_id is not None else frames.path.stem)
    if animal_id is not None:
        animal_id = str(animal_id).strip()
    root = Path(root)
    csv_path = root / ANNOTATIONS_FILE
    existing = read_csv(csv_path) if csv_path.is_file() else pd.DataFrame(columns=ANNOTATION_COLUMNS)
    if not existing.empty:
        absent = [c for c in ANNOTATION_COLUMNS if c not in existing.columns]
        if absent:
            raise DataError(f"{csv_path}: missing column(s) {absent}; expected columns {ANNOTATION_COLUMNS}")

    rel_folder = f"{RECORDINGS_DIR}/{recording_id}/{gas}"
    folder = root / rel_folder
    rows: list[dict[str, Any]] = []
    with staged_dir(root) as staging:  # nothing changes under root unless every frame was written
        selected = 0
        for index, (time, frame) in enumerate(frames):
            if end is not None and time > end + 1e-6:
                break
            if start is not None and time < start - 1e-6:
                continue
            selected += 1
            if (selected - 1) % every:
                continue
            name = write_frame(staging / rel_folder / f"frame_{index:06d}", frame).name  # bit depth kept
            row = {
                "frame_path": f"{rel_folder}/{name}",
                "mask_path": "",
                "gas_type": gas,
                "ph_value": float(ph),
                "class_name": labels.class_names[class_id],
                "class_id": class_id,
                "original_sample_id": recording_id,
                "augmentation_id": 0,
                "timestamp": f"{time:.6f}".rstrip("0").rstrip(".") if time else "0",
            }
            if animal_id is not None:
                row["animal_id"] = animal_id
            rows.append(row)
            if progress is not None:
                progress(1)
        if not rows:
            span = f"between {start if start is not None else 0:g} s and {f'{end:g} s' if end is not None else 'the end'}"
            raise DataError(f"{frames.path} has no frame {span}")
        # Replace this recording's frames (same id and gas) and its rows.
        same = recording_rows(existing, recording_id, gas)
        replaced = int(same.sum())
        existing = existing[~same]
        table = pd.concat([existing, pd.DataFrame(rows)], ignore_index=True) if not existing.empty else pd.DataFrame(rows)
        extra = [c for c in table.columns if c not in ANNOTATION_COLUMNS]
        ordered = ANNOTATION_COLUMNS + [c for c in WHO_WHEN_COLUMNS if c in extra] + [c for c in extra if c not in WHO_WHEN_COLUMNS]
        write_csv(staging / ANNOTATIONS_FILE, table.reindex(columns=ordered).fillna(""))
        if folder.exists():
            shutil.rmtree(folder)
    return ImportResult(recording_id, gas, folder, len(rows), replaced, csv_path)
