"""16-bit and float frames, and the intensity window (data.frame_window) that maps any bit depth to
the model's input: file round trips, each mode against numpy, errors naming the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from fume.config import FrameWindowConfig, FumeConfig
from fume.data.dataset import PairedDataset
from fume.data.frames import load_frame, resize_frame, stored_bit_depth, windowed_to_input, write_frame
from fume.data.recordings import FrameSource
from fume.data.window import PIXEL_STRIDE, recording_range, sample_evenly, to_display, window_frame
from fume.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def frames16(n: int = 3, shape: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Radiometric-looking counts: a 7000-9000 background with a darker blob, per frame."""
    out = []
    for i in range(n):
        frame = RNG.normal(8000 + 300 * i, 250, shape)
        frame[10:30, 20:40] -= 1500
        out.append(np.clip(frame, 0, 65535).astype(np.uint16))
    return out


@pytest.mark.parametrize(("suffix", "dtype"), [(".png", np.uint8), (".png", np.uint16), (".tiff", np.uint16), (".tiff", np.float32)])
def test_frames_keep_their_bit_depth_through_files(tmp_path: Path, suffix: str, dtype: type) -> None:
    frame = frames16(1)[0].astype(dtype) if dtype != np.uint8 else (frames16(1)[0] // 256).astype(np.uint8)
    if dtype == np.float32:
        frame = frame / np.float32(100.0) - np.float32(40.0)  # temperatures in degrees C
    path = tmp_path / f"f{suffix}"
    if suffix == ".png":
        assert cv2.imwrite(str(path), frame)
    else:
        tifffile.imwrite(path, frame)
    loaded = load_frame(path)
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, frame)
    assert stored_bit_depth(path) == {np.uint8: "8-bit", np.uint16: "16-bit", np.float32: "float"}[dtype]
    written = write_frame(tmp_path / "copy" / "frame", loaded)  # FUME's own writer picks a lossless type
    assert written.suffix == (".tiff" if dtype == np.float32 else ".png")
    np.testing.assert_array_equal(load_frame(written), frame)


def test_tiff_that_is_not_one_gray_frame_is_refused_naming_it(tmp_path: Path) -> None:
    pages = tmp_path / "stack.tif"
    tifffile.imwrite(pages, np.zeros((3, 8, 8), np.uint16), photometric="minisblack", metadata=None)
    with pytest.raises(DataError, match=r"stack.tif is a TIFF of 3 pages; expected one frame per file"):
        load_frame(pages)
    rgb16 = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb16, np.zeros((8, 8, 3), np.uint16), photometric="rgb")
    with pytest.raises(DataError, match=r"rgb16.tif has shape \(8, 8, 3\); expected one channel"):
        load_frame(rgb16)
    broken = tmp_path / "broken.tiff"
    broken.write_bytes(b"II*\x00 not really")
    with pytest.raises(DataError, match="cannot read frame .*broken.tiff: a TIFF without an image"):
        load_frame(broken)


def test_config_accepts_the_shorthands_and_refuses_bad_windows() -> None:
    parse = FrameWindowConfig.model_validate
    assert parse("minmax").mode == "minmax"
    assert parse([7000, 9000]) == FrameWindowConfig(mode="fixed", range=(7000, 9000))
    assert parse({"mode": "percentile", "percentiles": [2, 98]}).percentiles == (2.0, 98.0)
    assert FumeConfig().data.frame_window.mode == "auto"
    for bad, message in (([9000, 7000], "low < high"), ({"mode": "percentile", "percentiles": [5, 120]}, "<= 100"), ("median", "mode")):
        with pytest.raises(ValueError, match=message):
            parse(bad)


def test_auto_keeps_8bit_frames_exactly_as_before() -> None:
    frame = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
    assert window_frame(frame, FrameWindowConfig()) is frame
    expected = cv2.resize(frame, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    np.testing.assert_array_equal(windowed_to_input(frame, (32, 24)), expected)


def test_fixed_and_minmax_against_hand_computed_values() -> None:
    frame = np.array([[1000, 2000], [3000, 5000]], np.uint16)
    fixed = window_frame(frame, FrameWindowConfig.model_validate([1000, 5000]))
    np.testing.assert_allclose(fixed, [[0.0, 0.25], [0.5, 1.0]])
    clipped = window_frame(frame, FrameWindowConfig.model_validate([2000, 3000]))
    np.testing.assert_allclose(clipped, [[0.0, 0.0], [1.0, 1.0]])  # outside the window: its ends
    minmax = window_frame(frame, FrameWindowConfig(mode="minmax"))
    np.testing.assert_allclose(minmax, (frame - 1000) / 4000.0, rtol=1e-6)
    assert minmax.dtype == np.float32 and to_display(minmax).tolist() == [[0, 64], [128, 255]]
    # An 8-bit frame with an explicit window is windowed too (8-bit x 257 = the same 16-bit picture).
    small = np.array([[0, 51], [102, 255]], np.uint8)
    np.testing.assert_allclose(window_frame(small.astype(np.uint16) * 257, FrameWindowConfig.model_validate([0, 65535])), small / 255.0, atol=1e-7)


def test_percentile_range_pools_a_recording_sample() -> None:
    frames = frames16(40)
    window = FrameWindowConfig(mode="percentile", percentiles=(1, 99))
    sample = sample_evenly(frames)
    assert len(sample) == 32 and sample[0] is frames[0] and sample[-1] is frames[-1]
    pooled = np.concatenate([f[::PIXEL_STRIDE, ::PIXEL_STRIDE].ravel() for f in sample]).astype(np.float64)
    low, high = recording_range(sample, window)
    assert (low, high) == pytest.approx(tuple(np.percentile(pooled, [1, 99])))
    windowed = window_frame(frames[5], window, (low, high))
    np.testing.assert_allclose(windowed, np.clip((frames[5] - low) / (high - low), 0, 1), rtol=1e-5, atol=1e-6)
    # Without a recording, a 16-bit frame under `auto` is its own recording (percentiles 1-99).
    alone = window_frame(frames[5], FrameWindowConfig())
    own = np.percentile(frames[5][::PIXEL_STRIDE, ::PIXEL_STRIDE].astype(np.float64), [1, 99])
    np.testing.assert_allclose(alone, np.clip((frames[5] - own[0]) / (own[1] - own[0]), 0, 1), rtol=1e-5, atol=1e-6)


def test_blank_frame_is_an_error_not_a_blank_input() -> None:
    blank = np.full((8, 8), 4000, np.uint16)
    with pytest.raises(DataError, match=r"frame x.png has intensity range \[4000, 4000\]"):
        window_frame(blank, FrameWindowConfig(mode="minmax"), what="frame x.png")
    with pytest.raises(DataError, match=r"recording r1 \(CO2\) \(percentiles 1-99\) has intensity range"):
        recording_range([blank, blank], FrameWindowConfig(mode="percentile"), "recording r1 (CO2)")


def _write_recording(root: Path, name: str, frames: list[np.ndarray]) -> list[str]:
    paths = []
    for i, frame in enumerate(frames):
        rel = f"{name}/frame_{i:03d}"
        paths.append(str(write_frame(root / rel, frame).relative_to(root)))
        mask = np.zeros(frame.shape, np.uint8)
        mask[10:30, 20:40] = 2
        cv2.imwrite(str(root / f"{name}/mask_{i:03d}.png"), mask)
    return paths


def test_dataset_windows_16bit_frames_by_their_recording(tmp_path: Path) -> None:
    recordings = {"rec_a": frames16(4), "rec_b": [f + 20000 for f in frames16(4)]}
    rows = []
    for name, frames in recordings.items():
        for i, path in enumerate(_write_recording(tmp_path, name, frames)):
            rows.append({"sample_id": f"{name}-{i}", "co2_frame": path, "co2_mask": f"{name}/mask_{i:03d}.png", "ch4_frame": "", "ch4_mask": "",
                         "ph_value": 6.5, "class_id": 0, "class_name": "Healthy", "is_paired": False, "missing_modality": "ch4",
                         "co2_recording": name, "ch4_recording": ""})
    table = pd.DataFrame(rows)
    dataset = PairedDataset(table, tmp_path)  # `auto`: 16-bit -> percentile 1-99 per recording
    for i, row in table.iterrows():
        frames = recordings[row["co2_recording"]]
        low, high = np.percentile(np.concatenate([f[::PIXEL_STRIDE, ::PIXEL_STRIDE].ravel() for f in frames]).astype(np.float64), [1, 99])
        frame = frames[int(row["sample_id"].rsplit("-", 1)[1])]
        expected = np.clip((frame.astype(np.float64) - low) / (high - low), 0, 1)
        np.testing.assert_allclose(dataset[i]["co2_frame"][0].numpy(), expected, rtol=1e-5, atol=1e-6)
    # Both recordings fill the input range although rec_b is 20000 counts brighter.
    assert float(dataset[0]["co2_frame"].mean()) == pytest.approx(float(dataset[4]["co2_frame"].mean()), abs=0.05)
    # The same frames as 8-bit through `fixed [0, 65535]` of their x257 copy: the same input as 8-bit `auto`.
    small = [(f // 256).astype(np.uint8) for f in recordings["rec_a"]]
    paths8 = _write_recording(tmp_path, "rec_8", small)
    paths16 = _write_recording(tmp_path, "rec_16", [f.astype(np.uint16) * 257 for f in small])
    table8 = table.iloc[:4].assign(co2_frame=paths8, co2_mask=[p.replace("frame", "mask") for p in paths8])
    table16 = table.iloc[:4].assign(co2_frame=paths16, co2_mask=[p.replace("frame", "mask") for p in paths16])
    as8 = PairedDataset(table8, tmp_path, image_size=(32, 24))
    as16 = PairedDataset(table16, tmp_path, image_size=(32, 24), frame_window=FrameWindowConfig.model_validate([0, 65535]))
    for i in range(4):
        np.testing.assert_allclose(as16[i]["co2_frame"].numpy(), as8[i]["co2_frame"].numpy(), atol=2e-3)  # resize rounding of uint8


def test_frame_source_window_range_covers_the_whole_recording(tmp_path: Path) -> None:
    frames = frames16(40)
    for i, frame in enumerate(frames):
        write_frame(tmp_path / "rec" / f"frame_{i:03d}", frame)
    source = FrameSource(tmp_path / "rec")
    assert source.frame_count() == 40
    window = FrameWindowConfig(mode="percentile")
    assert source.window_range(window) == pytest.approx(recording_range(sample_evenly(frames), window))
    assert source.window_range(FrameWindowConfig(mode="minmax")) is None  # per frame: no recording range
    eight = tmp_path / "rec8"
    for i in range(3):
        write_frame(eight / f"frame_{i}", (frames[i] // 256).astype(np.uint8))
    assert FrameSource(eight).window_range(FrameWindowConfig()) is None  # 8-bit `auto`: as stored


def test_resize_keeps_16bit_and_float(tmp_path: Path) -> None:
    frame = frames16(1)[0]
    assert resize_frame(frame, (32, 24)).dtype == np.uint16
    assert resize_frame(frame.astype(np.float32), (32, 24)).dtype == np.float32
    with pytest.raises(ConfigError):
        FrameSource(tmp_path, fps=-1)
