"""FLIR files, through the optional extra `pip install "fume[flir]"`: SEQ and FFF sequences (flirpy's
FFF parser, one frame at a time) and radiometric JPEG stills (flyr).

A SEQ file is FFF frames one after the other; FlirSequence walks it from the file stream, reading
one frame's bytes at a time, so a recording of any length takes one frame's memory. Frames are the
camera's raw 16-bit counts (uint16, H x W) by default: lossless, present in every FFF whether or
not it carries a calibration, and what a gas camera's high-sensitivity view shows; the frame
window (data.frame_window) maps them to the model's input like any 16-bit frame. temperature=True
converts them to degrees C (float32) with the file's Planck and atmosphere constants instead.
CSQ files (JPEG-LS compressed frames) are not read: flirpy has no decoder for them.

A .jpg is an ordinary image everywhere else in FUME; a radiometric JPEG's temperatures are read only
when asked for, with read_flir_still (has_flir_data tells whether a JPEG carries them).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fume.errors import ConfigError, DataError

FLIR_SEQUENCE_SUFFIXES = frozenset({".seq", ".fff"})
INSTALL_HINT = 'FLIR files need the optional extra: pip install "fume[flir]"'

_FFF_MAGIC = b"FFF\x00"
_HEADER_BYTES = 64  # FFF file header (flirpy.io.fff.FffHeader)
_RECORD_BYTES = 32  # one entry of the record directory (flirpy.io.fff.FffRecord)
_MAX_RECORDS = 1024  # real files hold a few; more means a damaged header
_RAW_DATA, _CAMERA_INFO = 0x01, 0x20  # FFF record types
_RAW_LITTLE_ENDIAN = 2  # raw-data record subtype: 1 big-endian, 2 little-endian, 3 PNG


def is_flir_file(path: str | os.PathLike) -> bool:
    """True for a FLIR sequence FUME reads with FlirSequence (.seq, .fff), by suffix. JPEGs are never
    FLIR files here: a radiometric JPEG is also an ordinary image (see read_flir_still)."""
    return Path(path).suffix.lower() in FLIR_SEQUENCE_SUFFIXES


def _fff_module(path: Path) -> Any:
    try:
        from flirpy.io import fff
    except ImportError:
        raise DataError(f"cannot read {path}: {INSTALL_HINT}") from None
    return fff


class FlirSequence:
    """The frames of a FLIR SEQ or FFF file, one at a time: iterating yields (time in seconds,
    frame). A frame is uint16 raw counts (H, W), or float32 degrees C with temperature=True.

    Times come from the camera's clock stamped in each frame (seconds and milliseconds), relative to
    the first frame; a frame without a stamp gets index / fps. fps is the `fps` given, else the
    frame rate the file records, else None. A damaged or truncated file raises DataError naming the
    file, the frame and the byte offset when the iteration reaches it, after the good frames."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None, temperature: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"FLIR file not found: {self.path}")
        self._fff = _fff_module(self.path)
        self.temperature = temperature
        self.size = self.path.stat().st_size
        if fps is not None and fps <= 0:
            raise ConfigError(f"fps must be positive, got {fps}")
        first = next(self._frames(), None)
        if first is None:
            raise DataError(f"{self.path} is empty; expected a FLIR SEQ or FFF file")
        recorded = float(first[1].meta.get("FrameRate") or 0) or None
        self.fps = float(fps) if fps is not None else recorded
        self.shape = (int(first[1].height), int(first[1].width))

    def _frames(self, decode: bool = True) -> Iterator[tuple[int, Any]]:
        """(index, flirpy Fff) for each frame (None instead of the Fff when decode is False)."""
        fff = self._fff
        with open(self.path, "rb") as stream:
            offset, index = 0, 0
            while offset < self.size:
                where = f"{self.path}: frame {index} at byte {offset}"
                stream.seek(offset)
                head = stream.read(_HEADER_BYTES)
                if len(head) < _HEADER_BYTES or head[:4] != _FFF_MAGIC:
                    raise DataError(f"{where} is not a FLIR FFF frame (no FFF header); the file is damaged or not a FLIR SEQ/FFF file")
                bigendian = fff.FffHeader.detect_bigendian(head)
                header = fff.FffHeader.from_buffer(head, bigendian=bigendian)
                if not 0 < header.record_count <= _MAX_RECORDS or header.record_dir_offset < _HEADER_BYTES:
                    raise DataError(f"{where} has a damaged FFF header ({header.record_count} records at offset {header.record_dir_offset})")
                stream.seek(offset + header.record_dir_offset)
                directory = stream.read(header.record_count * _RECORD_BYTES)
                if len(directory) < header.record_count * _RECORD_BYTES:
                    raise DataError(f"{where}: the file ends inside the frame's record directory (truncated file)")
                records = [fff.FffRecord.from_buffer(directory, i * _RECORD_BYTES, bigendian) for i in range(header.record_count)]
                length = max([header.record_dir_offset + len(directory)] + [r.record_offset + r.record_length for r in records])
                if offset + length > self.size:
                    raise DataError(f"{where} needs {length} bytes but the file ends after {self.size - offset} (truncated file)")
                if decode:
                    stream.seek(offset)
                    yield index, self._parse(stream.read(length), records, where)
                else:
                    yield index, None
                offset += length
                index += 1

    def _parse(self, chunk: bytes, records: list[Any], where: str) -> Any:
        raw = [r for r in records if r.record_type == _RAW_DATA]
        if not raw:
            raise DataError(f"{where} holds no raw thermal image (FFF record type 1)")
        if raw[0].record_subtype != _RAW_LITTLE_ENDIAN:
            kind = {1: "big-endian", 3: "PNG"}.get(raw[0].record_subtype, f"subtype {raw[0].record_subtype}")
            raise DataError(f"{where} stores its raw image as {kind}; FUME reads little-endian raw FFF frames (flirpy)")
        try:
            frame = self._fff.Fff(chunk)
            frame.get_image()  # decode now, so that a damaged frame fails here
        except (ValueError, struct.error, AttributeError, TypeError, IndexError, OverflowError, OSError) as err:  # flirpy on damaged bytes
            raise DataError(f"{where} cannot be decoded: {err}") from None
        return frame

    def __len__(self) -> int:
        """The number of frames, from the frame headers (no pixel is read)."""
        return sum(1 for _ in self._frames(decode=False))

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        start = None
        for index, frame in self._frames():
            image = self._image(frame, index)
            if image.shape != self.shape:
                raise DataError(f"{self.path}: frame {index} is {image.shape[1]}x{image.shape[0]}, frame 0 {self.shape[1]}x{self.shape[0]}")
            stamp = _camera_clock(frame)
            if index == 0:
                start = stamp
            if stamp is not None and start is not None:
                time = (stamp - start) / 1000
            elif self.fps:
                time = index / self.fps
            else:
                raise DataError(f"{self.path}: frame {index} has no time stamp and the file records no frame rate; give the frame rate (fps)")
            del frame  # its bytes, before the next frame's are read
            yield time, image

    def _image(self, frame: Any, index: int) -> np.ndarray:
        if not self.temperature:
            return np.array(frame.get_image(), dtype=np.uint16)  # a copy: the chunk's bytes are freed with the frame
        if "Planck R1" not in frame.meta:
            raise DataError(f"{self.path}: frame {index} carries no calibration (FFF camera-info record); read raw counts instead")
        try:
            with np.errstate(all="ignore"):
                celsius = np.asarray(frame.get_radiometric_image(), dtype=np.float32)
        except (ValueError, KeyError, ZeroDivisionError, OverflowError) as err:
            raise DataError(f"{self.path}: frame {index}: cannot convert raw counts to temperatures: {err}") from None
        if not np.isfinite(celsius).all():
            raise DataError(f"{self.path}: frame {index}: the file's calibration gives non-finite temperatures; read raw counts instead")
        return celsius


def _camera_clock(frame: Any) -> int | None:
    """The frame's capture time in milliseconds (Unix time) from the camera-info record (ExifTool's
    FLIR CameraInfo 0x384: seconds, 0x388: milliseconds), or None. flirpy reads only the seconds,
    too coarse for frames a few tens of milliseconds apart."""
    for record in frame.records:
        if record.record_type == _CAMERA_INFO and record.record_length >= 0x38C:
            data = frame.data[record.record_offset : record.record_offset + 0x38C]
            order = "<" if int.from_bytes(data[:2], "little") == 2 else ">"  # as flirpy decides it
            seconds, millis = struct.unpack_from(order + "II", data, 0x384)
            return seconds * 1000 + millis if seconds else None
    return None


def has_flir_data(path: str | os.PathLike) -> bool:
    """True when the JPEG at `path` carries FLIR thermal data (an APP1 segment starting "FLIR\\0"),
    from its segment headers only; needs no extra."""
    try:
        with open(path, "rb") as stream:
            if stream.read(2) != b"\xff\xd8":
                return False
            while True:  # the segments before the image data: marker, length, payload
                segment = stream.read(4)
                if len(segment) < 4 or segment[0] != 0xFF or segment[1] == 0xDA:  # end, garbage or start of scan
                    return False
                payload = stream.tell()
                if segment[1] == 0xE1 and stream.read(5) == b"FLIR\x00":
                    return True
                stream.seek(payload + int.from_bytes(segment[2:], "big") - 2)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None


def read_flir_still(path: str | os.PathLike) -> np.ndarray:
    """The temperatures (degrees C, float32, H x W) of a FLIR radiometric JPEG, decoded by flyr with
    the calibration the file carries."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FLIR image not found: {path}")
    try:
        import flyr
    except ImportError:
        raise DataError(f"cannot read {path}: {INSTALL_HINT}") from None
    try:
        with np.errstate(all="ignore"):
            celsius = np.asarray(flyr.unpack(str(path)).celsius, dtype=np.float32)
    except Exception as err:  # flyr raises ValueError, KeyError, struct.error, PIL errors on non-FLIR files
        raise DataError(f"cannot read {path} as a FLIR radiometric JPEG (no thermal data or damaged): {type(err).__name__}: {err}") from None
    if celsius.ndim != 2 or not np.isfinite(celsius).all():
        raise DataError(f"{path}: its FLIR thermal data gives no finite 2-D temperature image (shape {celsius.shape})")
    return celsius
