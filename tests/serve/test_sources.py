"""Live sources driven step by step (LiveSource.step(now) with chosen times): pacing and dropped
frames, pairing, smoothing, history rows, end, loop, folders, faults with backoff, stalls, alerts."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest

from fume.errors import ConfigError
from fume.serve.alerts import AlertRule, AlertTracker
from fume.serve.sources import parse_source


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]


def video_spec(sequence: Path, name: str = "pen", extra: str = "") -> object:
    return parse_source(f"{name}=co2:{sequence / 'co2.mp4'},ch4:{sequence / 'ch4.mp4'}{extra}")


def test_parse_source(sequence: Path) -> None:
    spec = parse_source(f"pen1=co2:{sequence / 'co2.mp4'},loop")
    assert spec.gases == {"co2": str(sequence / "co2.mp4")} and spec.loop and spec.kind == "video"
    stream = parse_source("cam=co2:rtsp://10.0.0.7/s1,ch4:rtsp://10.0.0.8/s1")
    assert stream.kind == "stream" and stream.gases["ch4"] == "rtsp://10.0.0.8/s1"
    assert parse_source(f"p3=folder:{sequence},fps:5").kind == "folder"
    bad = {
        "pen1": "NAME=SPEC", "=co2:x": "must be 1-64", "a b=co2:x": "must be 1-64", "p=co2:/no/such.mp4": "does not exist",
        "p=sound:x.wav": "cannot read 'sound:x.wav'", f"p=folder:{sequence},co2:{sequence / 'co2.mp4'}": "not both",
        "p=loop": "give co2:PATH", "p=co2:rtsp://x,fps:0": "fps must be positive",
    }
    for text, words in bad.items():
        with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
            parse_source(text)


def test_video_source_plays_against_the_clock(make_service, predictor, sequence: Path) -> None:
    service = make_service([video_spec(sequence)])
    source = service.sources["pen"]
    frames = {gas: decoded(sequence / f"{gas}.mp4") for gas in ("co2", "ch4")}

    assert source.step(100.0)  # opens the videos: frame 0 (t = 0 s) is due
    assert not source.step(100.05)  # frame 1 is due at 100.1
    began = time.perf_counter()
    assert source.step(100.35)  # frames 1, 2 and 3 are due: 3 is taken, 1 and 2 dropped in both gases
    took = time.perf_counter() - began
    assert source.dropped == 4 and source.processed == 2

    rows = service.history.pairs("pen")
    assert len(rows) == 2
    expected = [predictor.predict(frames["co2"][i], frames["ch4"][i]) for i in (0, 3)]
    for row, pred in zip(rows, expected):
        data = pred.to_dict()
        assert row["class_name"] == data["class_name"]
        np.testing.assert_allclose(list(row["probabilities"].values()), pred.probabilities, rtol=1e-6)
        for gas in ("co2", "ch4"):
            assert row[f"{gas}_plume_area_px"] == data["gases"][gas]["plume_area_px"]
            assert row[f"{gas}_tube_found"] == data["gases"][gas]["tube_found"]
    # Smoothed as video mode: EMA with alpha 0.1 starting from the first pair.
    smoothed = 0.1 * expected[1].probabilities + 0.9 * expected[0].probabilities
    np.testing.assert_allclose(list(rows[1]["smoothed_probabilities"].values()), smoothed, rtol=1e-6)
    assert rows[1]["smoothed_class_name"] == predictor.label_config.class_names[int(np.argmax(smoothed))]
    # Frame 3 was due at 100.3, its step began at 100.35 and stored it `took` seconds later.
    assert 0.05 - 1e-4 <= rows[1]["lag_s"] <= 0.05 + took + 1e-4

    snapshot = source.snapshot()
    assert snapshot["state"] == "running" and snapshot["latest"]["id"] == rows[1]["id"] and snapshot["gases"] == ["co2", "ch4"]
    assert source.step(101.0)  # frames 4-9 due: 9 is taken
    assert not source.step(102.0)
    assert source.snapshot()["state"] == "ended" and "ended" in source.reason
    assert not source.step(103.0) and len(service.history.pairs("pen")) == 3


def test_looped_video_starts_again(make_service, sequence: Path) -> None:
    service = make_service([video_spec(sequence, extra=",loop")])
    source = service.sources["pen"]
    assert source.step(0.0)
    assert source.step(1.05)  # 10 frames at 10 fps: the second pass's frame 0 is due at 1.0 s
    first, again = service.history.pairs("pen")
    assert source.dropped == 2 * 9
    assert [first[k] for k in ("class_name", "co2_plume_area_px", "ch4_plume_area_px")] == [again[k] for k in ("class_name", "co2_plume_area_px", "ch4_plume_area_px")]
    assert source.state == "running"


def put_pair(folder: Path, name: str, sequence: Path, index: int, mtime: float, corrupt: bool = False, gases=("co2", "ch4")) -> None:
    for gas in gases:
        data = (sequence / gas / f"frame_{index:05d}.png").read_bytes()
        path = folder / f"{name}_{gas}.png"
        path.write_bytes(data[: len(data) // 3] if corrupt else data)
        os.utime(path, (mtime, mtime))


def test_folder_source_faults_and_backoff_while_another_source_runs(make_service, sequence: Path, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    service = make_service([parse_source(f"barn=folder:{watched}"), video_spec(sequence, "pen", ",loop")], folder_settle_s=0.0)
    barn, pen = service.sources["barn"], service.sources["pen"]

    assert not barn.step(0.0)  # an empty folder: nothing yet
    put_pair(watched, "a", sequence, 0, 1000)
    assert barn.step(0.1) and barn.processed == 1
    put_pair(watched, "b", sequence, 1, 1001)
    put_pair(watched, "c", sequence, 2, 1002)
    put_pair(watched, "d", sequence, 3, 1003, gases=("co2",))  # its CH4 frame has not come yet
    assert barn.step(0.2) and barn.dropped == 1  # the newest complete pair c; b dropped
    assert not barn.step(0.3)

    put_pair(watched, "e", sequence, 4, 1004, corrupt=True)
    assert not barn.step(1.0)
    assert barn.state == "failed" and "e_co2.png" in barn.reason and "retry 1 in 1 s" in barn.reason
    assert pen.step(1.0) and pen.step(1.5)  # the other source goes on
    put_pair(watched, "f", sequence, 5, 1005, corrupt=True)
    assert not barn.step(1.5)  # waiting for its retry at 2.0
    assert not barn.step(2.0) and "f_co2.png" in barn.reason and "retry 2 in 2 s" in barn.reason
    put_pair(watched, "g", sequence, 6, 1006)
    assert not barn.step(3.9)
    assert barn.step(4.0) and barn.state == "running" and barn.reason == "" and barn.failures == 0
    assert [r["source"] for r in service.history.pairs("barn")] == ["barn"] * 3


def test_a_source_without_new_frames_is_marked_stalled(make_service, sequence: Path, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    service = make_service([parse_source(f"barn=folder:{watched}")], folder_settle_s=0.0, stall_after_s=5.0)
    barn = service.sources["barn"]
    assert not barn.step(10.0) and not barn.step(14.9)
    assert barn.state == "starting"
    assert not barn.step(15.0)
    assert barn.state == "stalled" and barn.reason == "no new frame for 5 s"
    put_pair(watched, "a", sequence, 0, 1000)
    assert barn.step(16.0) and barn.state == "running"
    shutil.rmtree(watched)
    assert not barn.step(17.0) and barn.state == "failed" and "is gone" in barn.reason


def test_alert_tracker_hysteresis() -> None:
    tracker = AlertTracker(AlertRule("Acidotic", after_s=10.0, clear_after_s=5.0))
    events = [(t, c, tracker.update(c, t)) for t, c in [
        (0, "Acidotic"), (6, "Healthy"), (7, "Acidotic"), (16, "Acidotic"), (17, "Acidotic"),  # raised at 17 (held since 7)
        (18, "Acidotic"), (19, "Healthy"), (22, "Acidotic"), (23, "Healthy"), (27, "Healthy"), (28, "Healthy"),  # cleared at 28
        (29, "Acidotic"),
    ]]
    assert [(t, e) for t, _, e in events if e] == [(17, "raised"), (28, "cleared")]
    assert not tracker.active


def test_live_alert_is_raised_once_stored_and_cleared(make_service, predictor, sequence: Path) -> None:
    frames = {gas: decoded(sequence / f"{gas}.mp4") for gas in ("co2", "ch4")}
    ema, smoothed = None, []
    for i in range(10):  # the smoothed classes of the ten frames, computed here
        p = predictor.predict(frames["co2"][i], frames["ch4"][i]).probabilities
        ema = p if ema is None else 0.1 * p + 0.9 * ema
        smoothed.append(predictor.label_config.class_names[int(np.argmax(ema))])
    target = smoothed[0]
    held = next((i for i, c in enumerate(smoothed) if c != target), 10)  # frames 0..held-1 are in the class
    assert held >= 3, smoothed
    service = make_service([video_spec(sequence)], alert=AlertRule(target, after_s=0.2, clear_after_s=0.0))
    source = service.sources["pen"]
    sent = []
    source.notify = sent.append
    for i in range(10):  # frame i is due at 50 + i / 10: each step comes a little after
        assert source.step(50.0 + (i / 10 + 0.05 if i else 0.0))
        if i == 2:  # in the class since 50.0: raised at 50.25, once
            assert source.alerts.active and [s["event"] for s in sent] == ["alert_raised"]
    alerts = service.history.alerts("pen")
    assert len(alerts) == 1 and alerts[0]["class_name"] == target and alerts[0]["message"].startswith("pen: smoothed class")
    assert sent[0]["alert_id"] == alerts[0]["id"] and sent[0]["source"] == "pen"
    if held < 10:  # the smoothed class left it: cleared (clear_after_s = 0), stored
        assert [s["event"] for s in sent] == ["alert_raised", "alert_cleared"] and alerts[0]["cleared_at"] is not None
    else:
        assert alerts[0]["cleared_at"] is None and source.snapshot()["alert_active"]


def test_a_stream_keeps_only_its_newest_frame_and_is_retried_when_it_ends(make_service, sequence: Path) -> None:
    # FFmpeg's file:// protocol stands in for a camera's rtsp:// URL: the same PyAV reader thread.
    service = make_service([parse_source(f"cam=co2:file://{sequence / 'co2.mp4'}")])
    cam = service.sources["cam"]
    assert cam.spec.kind == "stream"
    cam._open(0.0)
    feed = cam.feeds["co2"]
    feed.thread.join(30)  # the whole (short) stream has been read: only its last frame is kept
    assert not feed.thread.is_alive()
    assert cam.step(0.0) and feed.dropped == 9
    expected = decoded(sequence / "co2.mp4")[-1]
    np.testing.assert_array_equal(cam.latest.gases["co2"].frame, expected)
    assert not cam.step(0.1)
    assert cam.state == "failed" and cam.reason.startswith("stream file://") and "ended; retry 1 in 1 s" in cam.reason
    assert cam.feeds is None and cam.dropped == 9  # closed, to be reopened at 1.1


def test_an_open_alert_is_carried_over_a_restart(make_service, sequence: Path, tmp_path: Path) -> None:
    db = tmp_path / "kept.sqlite"
    first = make_service([video_spec(sequence)], db=db)
    alert = first.history.raise_alert("pen", "Acidotic", 10.0, "pen: smoothed class Acidotic for 60 s")
    first.history.raise_alert("other", "Acidotic", 11.0, "other: ...")
    first.history.clear_alert(alert + 1, 12.0)
    first.stop()
    again = make_service([video_spec(sequence), video_spec(sequence, "other")], db=db)
    pen, other = again.sources["pen"], again.sources["other"]
    assert pen.alerts.active and pen.alert_id == alert  # not raised a second time
    assert not other.alerts.active and other.alert_id is None
