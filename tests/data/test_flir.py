"""FLIR files (fume.data.flir) on real camera files from flirpy's source distribution
(tests/fixtures/flir/README.md), checked against flirpy's own whole-file readers, ExifTool's
reading of the frame times and flyr's independent temperature conversion."""

from __future__ import annotations

import io
import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fume.data.flir import INSTALL_HINT, FlirSequence, has_flir_data, is_flir_file, read_flir_still
from fume.data.frames import load_frame
from fume.errors import ConfigError, DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flir"
SEQ = FIXTURES / "test_first2.seq"  # FLIR Duo Pro R, 640x512, 2 frames
FFF_LE = FIXTURES / "frame_000000_le.fff"  # FLIR ResearchIR, 320x240, 1 frame
FRAME_BYTES = 658_564  # each frame of SEQ (the file is two of them)

# ExifTool's Date/Time Original of the two SEQ frames (12:14:43.084 for frame 0 is also in flirpy's
# test/test_data/frame_000000.txt; frame 1, cut out as an FFF, reads 12:14:45.175): 2.091 s apart.
SEQ_TIMES = [0.0, 2.091]


def _fff_reference():
    return pytest.importorskip("flirpy.io.fff", reason=INSTALL_HINT)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _flir_jpeg(fff: bytes) -> bytes:
    """A radiometric JPEG as FLIR cameras write one: a visible image whose Exif APP1 segment is
    followed by the FFF bytes in APP1 segments, each "FLIR\\0", 0x01, chunk number, last chunk
    number, then up to 65525 bytes."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "FLIR Systems AB"  # Make
    Image.fromarray(np.full((48, 64), 128, np.uint8)).save(buffer, format="JPEG", exif=exif)
    jpeg = buffer.getvalue()
    assert jpeg[2:4] == b"\xff\xe0" and jpeg[20:22] == b"\xff\xe1"  # JFIF APP0 (18 bytes), then Exif APP1
    cut = 20 + 2 + int.from_bytes(jpeg[22:24], "big")  # after the Exif segment
    size = 65535 - 2 - 8
    chunks = [fff[i : i + size] for i in range(0, len(fff), size)]
    segments = b"".join(
        b"\xff\xe1" + struct.pack(">H", 2 + 8 + len(c)) + b"FLIR\x00\x01" + bytes([i, len(chunks) - 1]) + c for i, c in enumerate(chunks)
    )
    return jpeg[:cut] + segments + jpeg[cut:]


def test_flir_files_by_suffix():
    assert all(is_flir_file(name) for name in ("a.seq", "B.SEQ", "c.fff", Path("d/e.FFF")))
    # a JPEG is an ordinary image unless read_flir_still is asked; CSQ has no decoder (flirpy)
    assert not any(is_flir_file(name) for name in ("a.jpg", "a.jpeg", "a.png", "a.tiff", "a.csq", "seq"))


def test_sequence_matches_flirpy_and_exiftool():
    fff = _fff_reference()
    from flirpy.io.seq import Seq

    reference = Seq(str(SEQ))  # flirpy's own reader: the whole file in memory
    seq = FlirSequence(SEQ)
    assert len(seq) == len(reference) == 2
    assert seq.fps == 30.0 and seq.shape == (512, 640)  # ExifTool: Frame Rate 30, 640x512
    frames = list(seq)
    assert [round(t, 6) for t, _ in frames] == SEQ_TIMES
    for i, (_, frame) in enumerate(frames):
        assert frame.dtype == np.uint16 and frame.shape == (512, 640)
        np.testing.assert_array_equal(frame, reference[i].get_image())
    # frame 0 is flirpy's frame_000000.fff, whose ExifTool listing gives the camera's raw span
    # (Raw Value Median 2681, Raw Value Range 116): 2681 -/+ 58 are the frame's extremes
    assert (frames[0][1].min(), frames[0][1].max()) == (2681 - 58, 2681 + 58)
    one = FlirSequence(FFF_LE)
    (time, frame), *rest = list(one)
    assert not rest and time == 0.0 and one.fps == 30.0
    np.testing.assert_array_equal(frame, fff.Fff(str(FFF_LE)).get_image())
    assert frame.shape == (240, 320) and frame.dtype == np.uint16


def test_temperatures_agree_with_flyr_and_flirpy(tmp_path: Path):
    """Temperatures through flirpy's raw2temp (FlirSequence) and flyr's own conversion (the same
    FFF bytes in a radiometric JPEG) agree: two independent implementations of FLIR's formula."""
    _fff_reference()
    pytest.importorskip("flyr", reason=INSTALL_HINT)
    (_, celsius), _ = list(FlirSequence(SEQ, temperature=True))
    assert celsius.dtype == np.float32 and celsius.shape == (512, 640)
    jpeg = _write(tmp_path / "still.jpg", _flir_jpeg(SEQ.read_bytes()[:FRAME_BYTES]))
    assert has_flir_data(jpeg)
    assert load_frame(jpeg).shape == (48, 64)  # elsewhere in FUME it is the camera's visible image
    still = read_flir_still(jpeg)
    assert still.dtype == np.float32 and still.shape == (512, 640)
    np.testing.assert_allclose(still, celsius, atol=0.01)
    assert 5 < celsius.min() < celsius.max() < 20  # an outdoor scene in November; ExifTool: emissivity 0.94
    # the ResearchIR file's camera settings convert its counts to room temperatures
    (_, room), *_ = list(FlirSequence(FFF_LE, temperature=True))
    assert 20 < room.min() < room.max() < 35


def test_frames_stream_one_at_a_time(tmp_path: Path):
    """The first frame of a file whose later bytes are damaged is read; the damage is reported
    when reached, naming the file, the frame and the byte."""
    _fff_reference()
    good = SEQ.read_bytes()
    first = next(iter(FlirSequence(SEQ)))[1]
    damaged = _write(tmp_path / "damaged.seq", good[:FRAME_BYTES] + b"JUNK" + good[FRAME_BYTES + 4 :])
    frames = iter(FlirSequence(damaged))
    np.testing.assert_array_equal(next(frames)[1], first)
    with pytest.raises(DataError, match=rf"{damaged}: frame 1 at byte {FRAME_BYTES} is not a FLIR FFF frame"):
        next(frames)
    truncated = _write(tmp_path / "truncated.seq", good[: FRAME_BYTES + 1000])
    frames = iter(FlirSequence(truncated))
    np.testing.assert_array_equal(next(frames)[1], first)
    with pytest.raises(DataError, match=r"truncated\.seq: frame 1 at byte 658564 needs 658564 bytes but the file ends after 1000"):
        next(frames)


def test_memory_holds_one_frame_not_the_recording(tmp_path: Path):
    _fff_reference()
    frame = SEQ.read_bytes()[:FRAME_BYTES]
    long = _write(tmp_path / "long.seq", frame * 12)  # 12 frames, 7.9 MB: a valid SEQ (FFF frames end to end)
    seq = FlirSequence(long)
    tracemalloc.start()
    try:
        count = sum(1 for _ in seq)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == len(seq) == 12
    # one frame's bytes, its decoded copy and the caller's previous frame; not the 12 frames
    assert peak < 3.5 * FRAME_BYTES


def test_missing_extra_is_one_line_naming_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in [m for m in sys.modules if m == "flirpy" or m.startswith(("flirpy.", "flyr"))] + ["flirpy", "flyr"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it fails
    with pytest.raises(DataError) as err:
        FlirSequence(SEQ)
    assert str(err.value) == f'cannot read {SEQ}: FLIR files need the optional extra: pip install "fume[flir]"'
    jpeg = _write(tmp_path / "still.jpg", _flir_jpeg(SEQ.read_bytes()[:FRAME_BYTES]))
    with pytest.raises(DataError) as err:
        read_flir_still(jpeg)
    assert str(err.value) == f"cannot read {jpeg}: {INSTALL_HINT}" and "\n" not in str(err.value)
    assert has_flir_data(jpeg)  # needs no extra


def test_bad_files_name_the_file(tmp_path: Path):
    fff = _fff_reference()
    with pytest.raises(DataError, match="FLIR file not found: .*missing.seq"):
        FlirSequence(tmp_path / "missing.seq")
    with pytest.raises(DataError, match=r"empty\.seq is empty"):
        FlirSequence(_write(tmp_path / "empty.seq", b""))
    noise = _write(tmp_path / "noise.seq", np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"noise\.seq: frame 0 at byte 0 is not a FLIR FFF frame"):
        FlirSequence(noise)
    with pytest.raises(ConfigError, match="fps must be positive"):
        FlirSequence(SEQ, fps=0)

    # The ResearchIR file: record 0 is the camera info (type 0x20), record 1 the raw image.
    data = bytearray(FFF_LE.read_bytes())
    assert [(r.record_type, r.record_subtype) for r in fff.Fff(bytes(data)).records] == [(0x20, 0), (1, 2)]
    big_endian = bytearray(data)
    big_endian[96 + 2 : 96 + 4] = struct.pack("<H", 1)
    with pytest.raises(DataError, match=r"be\.fff: frame 0 at byte 0 stores its raw image as big-endian"):
        FlirSequence(_write(tmp_path / "be.fff", bytes(big_endian)))
    uncalibrated = bytearray(data)
    uncalibrated[64:66] = b"\x00\x00"  # the camera-info record dropped: no calibration, clock or frame rate
    path = _write(tmp_path / "uncalibrated.fff", bytes(uncalibrated))
    with pytest.raises(DataError, match=r"uncalibrated\.fff: frame 0 carries no calibration"):
        list(FlirSequence(path, temperature=True))
    with pytest.raises(DataError, match=r"uncalibrated\.fff: frame 0 has no time stamp and the file records no frame rate"):
        list(FlirSequence(path))
    seq = FlirSequence(path, fps=10)
    (time, frame), *_ = list(seq)
    assert seq.fps == 10 and time == 0.0
    np.testing.assert_array_equal(frame, fff.Fff(str(FFF_LE)).get_image())


def test_jpeg_without_flir_data(tmp_path: Path):
    pytest.importorskip("flyr", reason=INSTALL_HINT)
    plain = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(plain)
    assert not has_flir_data(plain)
    assert not has_flir_data(_write(tmp_path / "not_a_jpeg.jpg", b"GIF89a"))
    with pytest.raises(DataError, match=r"cannot read .*plain\.jpg as a FLIR radiometric JPEG"):
        read_flir_still(plain)
    with pytest.raises(DataError, match="FLIR image not found"):
        read_flir_still(tmp_path / "absent.jpg")
