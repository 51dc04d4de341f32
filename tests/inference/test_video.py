"""Video mode on a short generated sequence, the sequence generator, and their failure cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from fume.data.frames import load_frame, load_mask
from fume.data.sequence import generate_sequence
from fume.errors import ConfigError, DataError
from fume.inference import Predictor
from fume.inference.video import EMA_ALPHA, predict_video

N_FRAMES = 8


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sequence")
    generate_sequence(out, n_frames=N_FRAMES, size=(100, 76), fps=10.0, ph=[6.5, 5.3], seed=2)
    return out


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint)


def test_sequence_layout_and_labels(sequence: Path) -> None:
    table = pd.read_csv(sequence / "sequence.csv")
    assert list(table["frame"]) == list(range(N_FRAMES))
    np.testing.assert_allclose(table["time_s"], np.arange(N_FRAMES) / 10.0)
    assert list(table["ph_value"]) == [6.5] * 4 + [5.3] * 4
    assert list(table["class_name"]) == ["Healthy"] * 4 + ["Acidotic"] * 4
    for row in table.itertuples():
        for gas in ("co2", "ch4"):
            frame, mask = load_frame(sequence / getattr(row, f"{gas}_frame")), load_mask(sequence / getattr(row, f"{gas}_mask"))
            assert frame.shape == mask.shape == (76, 100)
            assert set(np.unique(mask)) <= {0, 1, 2}
    for gas in ("co2", "ch4"):
        with av.open(str(sequence / f"{gas}.mp4")) as container:
            frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
        assert len(frames) == N_FRAMES and frames[0].shape == (76, 100)
        # H.264 is lossy, but the video shows the PNG frames.
        png = load_frame(sequence / gas / "frame_00003.png").astype(float)
        assert np.abs(frames[3].astype(float) - png).mean() < 4.0


def test_sequence_is_coherent_and_deterministic(sequence: Path, tmp_path: Path) -> None:
    table = pd.read_csv(sequence / "sequence.csv")
    masks = [load_mask(sequence / p) for p in table["co2_mask"]]
    # Same scene: the tube does not move; the plume changes a little from frame to frame.
    assert all(np.array_equal(masks[0] == 1, m == 1) for m in masks[1:4])
    change = [np.mean(a != b) for a, b in zip(masks[:3], masks[1:4])]
    assert all(0 < c < 0.05 for c in change)
    # More CO2 once the rumen turns acidotic (pH 5.3), less CH4 (PlumePhysics in fume.data.generate).
    co2_area = [(load_mask(sequence / p) == 2).sum() for p in table["co2_mask"]]
    ch4_area = [(load_mask(sequence / p) == 2).sum() for p in table["ch4_mask"]]
    assert np.mean(co2_area[4:]) > 1.3 * np.mean(co2_area[:4])
    assert np.mean(ch4_area[4:]) < 0.8 * np.mean(ch4_area[:4])
    again = tmp_path / "again"
    generate_sequence(again, n_frames=2, size=(100, 76), fps=10.0, ph=6.5, seed=2, videos=False)
    for rel in ("co2/frame_00001.png", "ch4/frame_00001.png", "masks/ch4/frame_00001.png"):
        assert (again / rel).read_bytes() == (sequence / rel).read_bytes()


def test_sequence_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pH 7.1 is not one of the configured pH levels"):
        generate_sequence(tmp_path / "a", n_frames=2, size=(64, 48), ph=7.1)
    with pytest.raises(ConfigError, match="3 frames cannot hold 4 pH levels"):
        generate_sequence(tmp_path / "b", n_frames=3, size=(64, 48), ph=[6.5, 6.2, 5.9, 5.6])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="is not empty"):
        generate_sequence(tmp_path / "full", n_frames=2, size=(64, 48))


def test_video_mode_writes_csv_and_video(sequence: Path, predictor: Predictor, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = predict_video(predictor, out, co2=sequence / "co2.mp4", ch4=sequence / "ch4")  # a video and a folder
    assert result.frames == N_FRAMES and result.fps == pytest.approx(10.0)
    table = pd.read_csv(out / "video_predictions.csv")
    assert list(table["frame"]) == list(range(N_FRAMES))
    np.testing.assert_allclose(table["time_s"], np.arange(N_FRAMES) / 10.0, atol=1e-3)
    for column in ("prob_healthy", "smoothed_prob_acidotic", "smoothed_class_name", "co2_plume_area_px", "ch4_plume_area_percent", "co2_tube_found"):
        assert column in table.columns
    # The smoothing is the documented exponential moving average of the raw probabilities.
    raw = table[["prob_healthy", "prob_transitional", "prob_acidotic"]].to_numpy()
    expected = [raw[0]]
    for p in raw[1:]:
        expected.append(EMA_ALPHA * p + (1 - EMA_ALPHA) * expected[-1])
    smoothed = table[["smoothed_prob_healthy", "smoothed_prob_transitional", "smoothed_prob_acidotic"]].to_numpy()
    np.testing.assert_allclose(smoothed, np.array(expected), atol=1e-6)
    assert list(table["smoothed_class_id"]) == list(np.argmax(expected, axis=1))
    # Frame 0's raw probabilities are those of its two images predicted as a pair.
    with av.open(str(sequence / "co2.mp4")) as container:
        co2_frame0 = next(container.decode(video=0)).to_ndarray(format="gray")
    first = predictor.predict(co2_frame0, load_frame(sequence / "ch4" / "frame_00000.png"))
    np.testing.assert_allclose(raw[0], first.probabilities, atol=1e-6)
    with av.open(str(out / "annotated.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == N_FRAMES
    assert frames[0].shape[1] >= 2 * 100  # both gases side by side
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "video_predictions.csv"]


def test_sources_of_different_length(sequence: Path, predictor: Predictor, tmp_path: Path) -> None:
    short = tmp_path / "ch4_short"
    shutil.copytree(sequence / "ch4", short)
    for name in ("frame_00006.png", "frame_00007.png"):
        (short / name).unlink()
    result = predict_video(predictor, tmp_path / "out", co2=sequence / "co2", ch4=short, fps=5.0, write_video=False)
    assert result.frames == 6 and result.unused_frames == {"co2": 2, "ch4": 0}
    table = pd.read_csv(result.csv_path)
    np.testing.assert_allclose(table["time_s"], np.arange(6) / 5.0)
    assert not (tmp_path / "out" / "annotated.mp4").exists()


def test_single_gas_video(sequence: Path, predictor: Predictor, tmp_path: Path) -> None:
    result = predict_video(predictor, tmp_path / "out", ch4=sequence / "ch4.mp4", max_frames=3)
    table = pd.read_csv(result.csv_path)
    assert len(table) == 3 and table["co2_plume_area_px"].isna().all() and table["ch4_plume_area_px"].notna().all()


def test_broken_video_names_the_file_and_leaves_nothing(sequence: Path, predictor: Predictor, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=f"cannot open video {bad}"):
        predict_video(predictor, out, co2=bad, ch4=sequence / "ch4")
    with pytest.raises(DataError, match="video or frame folder not found: .*nowhere"):
        predict_video(predictor, out, co2=tmp_path / "nowhere")
    # A frame that cannot be read half-way through: no CSV and no video under their final names.
    frames = tmp_path / "frames"
    shutil.copytree(sequence / "co2", frames)
    (frames / "frame_00005.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="frame_00005.png"):
        predict_video(predictor, out, co2=frames)
    assert not out.exists() or [p for p in out.rglob("*") if p.is_file()] == []


def test_frame_size_mismatch_between_recordings(sequence: Path, predictor: Predictor, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_sequence(other, n_frames=2, size=(64, 48), videos=False)
    with pytest.raises(DataError, match=r"frame 0: CO2 source .* is 100x76 but CH4 source .* is 64x48"):
        predict_video(predictor, tmp_path / "out", co2=sequence / "co2", ch4=other / "ch4")


def test_an_encoding_failure_in_the_writer_thread_stops_the_run_and_leaves_nothing(
    sequence: Path, predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fume.io import VideoWriter

    written = []

    def failing_write(self, image):
        if len(written) == 2:
            raise OSError("disk full while encoding")
        written.append(image.shape)

    monkeypatch.setattr(VideoWriter, "write", failing_write)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full while encoding"):
        predict_video(predictor, out, co2=sequence / "co2", ch4=sequence / "ch4")
    assert len(written) == 2
    assert not out.exists() or [p for p in out.rglob("*") if p.is_file()] == []


def test_headless_mode_skips_drawing_and_reports_each_stage(sequence: Path, predictor: Predictor, tmp_path: Path) -> None:
    result = predict_video(predictor, tmp_path / "out", co2=sequence / "co2", ch4=sequence / "ch4", write_video=False)
    times = result.times
    assert result.video_path is None and times.annotate == 0.0 and times.encode == 0.0
    assert times.decode > 0.0 and times.predict > 0.0 and times.wall > 0.0
    assert "pairs/s" in times.describe(result.frames) and "decode" in times.describe(result.frames)
    drawn = predict_video(predictor, tmp_path / "drawn", co2=sequence / "co2", ch4=sequence / "ch4")
    assert drawn.times.annotate > 0.0 and drawn.times.encode > 0.0
    # The same predictions with and without the video.
    pd.testing.assert_frame_equal(pd.read_csv(result.csv_path), pd.read_csv(drawn.csv_path))
