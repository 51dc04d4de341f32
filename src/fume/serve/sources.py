"""Live sources of `fume serve`: where frames come from, how the two gases are paired, and the
per-source loop that predicts, smooths, stores and alerts.

A source is given as NAME=ITEM,ITEM,... (`--source`):
    pen1=co2:/data/pen1_co2.mp4,ch4:/data/pen1_ch4.mp4,loop   video files (or folders of frames), played in real time
    pen2=co2:rtsp://10.0.0.7/stream1,ch4:rtsp://10.0.0.8/stream1   camera streams (RTSP/HTTP, PyAV)
    pen3=folder:/srv/camera/pen3                               a folder watched for new pairs (NAME_co2.png + NAME_ch4.png, or co2/ + ch4/)
Either gas may be left out. `loop` replays a video file from the start when it ends (`once`, the
default, marks the source ended); `fps:N` sets the rate of a folder of frames.

Rate: a source processes one pair at a time at the rate the CPU allows; the frames that became
due meanwhile are dropped (counted), never queued, so the dashboard shows the present, not a
backlog. Video files are played against the clock (frame time t is due t seconds after the source
started); a stream's reader thread keeps only the newest frame; a folder gives its newest complete
pair. The two gases of a pair are each gas's newest frame at that moment (paired by time).

Faults: an error (a stream that ends or cannot be opened, a frame that cannot be decoded or read)
marks the source `failed` with the reason and it is retried after 1, 2, 4, ... 60 s; no new frame
for `stall_after_s` marks it `stalled` (a stream is then reopened, with the same backoff). Each
source runs in its own thread, so one source's trouble never stops the others.

LiveSource.step(now) does one unit of work and returns whether a pair was processed: the thread
calls it in a loop, tests call it directly with the times they choose.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fume.contract import GASES
from fume.data.frames import load_frame
from fume.data.recordings import FrameSource
from fume.data.window import Range
from fume.errors import ConfigError, DataError, FumeError
from fume.inference.predictor import PairPrediction
from fume.inference.video import EMA_ALPHA, ExponentialMovingAverage
from fume.logs import get_logger
from fume.serve.alerts import AlertRule, AlertTracker
from fume.serve.history import History

log = get_logger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
STALL_AFTER_S = 10.0
RATE_WINDOW_S = 10.0  # the processing rate shown is measured over this many seconds
FOLDER_POLL_S = 0.25
VIDEO_POLL_S = 0.01
FOLDER_SETTLE_S = 1.0  # a folder's newest files must be this old: a camera may still be writing them
STREAM_OPEN_TIMEOUT_S = 10.0


class SourceEnded(FumeError):
    """A video file played once has reached its end (or a stream has ended)."""


@dataclass(frozen=True)
class SourceSpec:
    name: str
    gases: dict[str, str] = field(default_factory=dict)  # gas -> file, folder of frames or stream URL
    folder: str | None = None  # a watched folder of pairs
    loop: bool = False
    fps: float | None = None

    @property
    def kind(self) -> str:
        if self.folder is not None:
            return "folder"
        return "stream" if any(is_url(p) for p in self.gases.values()) else "video"

    def describe(self) -> str:
        if self.folder is not None:
            return f"folder {self.folder}"
        return ", ".join(f"{gas.upper()} {path}" for gas, path in self.gases.items()) + (" (looped)" if self.loop else "")


def is_url(text: str) -> bool:
    return "://" in text


def parse_source(text: str) -> SourceSpec:
    """NAME=ITEM,... (module docstring) -> SourceSpec; ConfigError naming what is wrong."""
    example = "e.g. pen1=co2:pen1_co2.mp4,ch4:pen1_ch4.mp4,loop or pen2=folder:/srv/camera/pen2"
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not rest.strip():
        raise ConfigError(f"--source {text!r} must be NAME=SPEC, {example}")
    if not NAME.match(name):
        raise ConfigError(f"--source name {name!r} must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    gases: dict[str, str] = {}
    folder, loop, fps = None, False, None
    for item in (part.strip() for part in rest.split(",")):
        key, _, value = item.partition(":")
        key = key.lower()
        if key in GASES and value:
            gases[key] = value
        elif key == "folder" and value:
            folder = value
        elif key == "fps" and value:
            try:
                fps = float(value)
            except ValueError:
                raise ConfigError(f"--source {name}: fps:{value} is not a number") from None
            if not fps > 0:
                raise ConfigError(f"--source {name}: fps must be positive, got {value}")
        elif item in ("loop", "once"):
            loop = item == "loop"
        else:
            raise ConfigError(f"--source {name}: cannot read {item!r}; items are co2:PATH|URL, ch4:PATH|URL, folder:PATH, loop, once, fps:N ({example})")
    if folder is not None and gases:
        raise ConfigError(f"--source {name}: give either folder:PATH or co2:/ch4: recordings, not both")
    if folder is None and not gases:
        raise ConfigError(f"--source {name}: give co2:PATH|URL and/or ch4:PATH|URL, or folder:PATH ({example})")
    for path in ([folder] if folder else [p for p in gases.values() if not is_url(p)]):
        if not Path(path).exists():
            raise ConfigError(f"--source {name}: {path} does not exist")
    return SourceSpec(name, gases, folder, loop, fps)


@dataclass
class Frame:
    due: float  # when the frame was due (source clock), or arrived (streams)
    array: np.ndarray


class FileFeed:
    """A video file or folder of frames (fume.data.recordings.FrameSource) played against the clock."""

    def __init__(self, path: str, fps: float | None, loop: bool) -> None:
        self.source = FrameSource(path, fps)
        self.loop = loop
        self.offset = 0.0  # the start of the current pass, on the feed's clock
        self.frames = iter(self.source)
        self.pending: Frame | None = None  # decoded, not yet due
        self.last_time: float | None = None
        self.dropped = 0

    def _decode(self) -> Frame:
        while True:
            item = next(self.frames, None)
            if item is not None:
                self.last_time = item[0]
                return Frame(self.offset + item[0], item[1])
            if not self.loop:
                raise SourceEnded(f"{self.source.path} ended")
            if self.last_time is None:
                raise DataError(f"{self.source.path} holds no frame")
            self.offset += self.last_time + 1.0 / self.source.fps
            self.frames, self.last_time = iter(self.source), None

    def newest(self, position: float) -> Frame | None:
        """The newest frame due at `position` seconds after the feed started (earlier ones dropped);
        None when no new frame is due yet."""
        best = None
        while True:
            if self.pending is None:
                try:
                    self.pending = self._decode()
                except SourceEnded:
                    if best is None:
                        raise
                    return best  # the last frame first; the end is raised by the next call
            if self.pending.due > position:
                return best
            if best is not None:
                self.dropped += 1
            best, self.pending = self.pending, None

    def close(self) -> None:
        self.frames = iter(())


class StreamFeed:
    """A camera stream (RTSP/HTTP...) decoded by PyAV in a thread that keeps only the newest frame."""

    def __init__(self, url: str, clock: Callable[[], float]) -> None:
        import av

        self.url, self.clock = url, clock
        try:
            self.container = av.open(url, timeout=(STREAM_OPEN_TIMEOUT_S, STREAM_OPEN_TIMEOUT_S))
        except Exception as err:  # av.error.*: refused, timed out, unknown format
            raise DataError(f"cannot open stream {url}: {err}") from None
        if not self.container.streams.video:
            self.container.close()
            raise DataError(f"stream {url} has no video")
        self.latest: Frame | None = None
        self.error: FumeError | None = None
        self.dropped = 0
        self.stopped = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, name=f"fume-stream {url}", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        # The thread owns the container and closes it itself: closing it from another thread
        # while it decodes is not safe in PyAV. A hung read ends at the open/read timeout.
        try:
            for frame in self.container.decode(video=0):
                if self.stopped:
                    return
                with self.lock:
                    self.dropped += self.latest is not None
                    self.latest = Frame(self.clock(), frame.to_ndarray(format="gray"))
            self.error = SourceEnded(f"stream {self.url} ended")
        except Exception as err:
            self.error = DataError(f"stream {self.url}: {err}")
        finally:
            self.container.close()

    def newest(self, position: float) -> Frame | None:
        with self.lock:
            frame, self.latest = self.latest, None
        if frame is None and self.error is not None:
            raise self.error
        return frame

    def close(self) -> None:
        self.stopped = True  # the reader thread stops at its next frame


class FolderFeed:
    """A folder watched for new pairs (fume.inference.batch.pairs_from_folder's naming): the newest
    complete pair (both gases, unless the folder only ever held one gas) not yet seen."""

    def __init__(self, folder: str, settle_s: float = FOLDER_SETTLE_S) -> None:
        self.folder = Path(folder)
        self.settle_s = settle_s
        self.newest_seen = -1.0  # mtime of the newest pair taken
        self.dropped = 0

    def next_pair(self, wall: float) -> tuple[dict[str, Path], float] | None:
        from fume.inference.batch import pairs_from_folder

        try:
            pairs = pairs_from_folder(self.folder)
        except DataError:
            if not self.folder.is_dir():
                raise DataError(f"watched folder {self.folder} is gone") from None
            if any(self.folder.iterdir()):
                raise
            return None  # an empty folder: nothing yet
        both = any(p.co2 is not None for p in pairs) and any(p.ch4 is not None for p in pairs)
        ready = []
        for pair in pairs:
            files = {gas: Path(f) for gas, f in (("co2", pair.co2), ("ch4", pair.ch4)) if f is not None}
            if both and len(files) < 2:
                continue  # its partner may still come
            stamp = max(f.stat().st_mtime for f in files.values())
            if stamp > self.newest_seen and wall - stamp >= self.settle_s:
                ready.append((stamp, files))
        if not ready:
            return None
        ready.sort(key=lambda item: item[0])
        self.dropped += len(ready) - 1
        stamp, files = ready[-1]
        self.newest_seen = stamp  # taken now: a corrupt pair is not retried forever
        return files, stamp


class LiveSource:
    """One source: its feeds, smoothing, state and latest result (module docstring)."""

    def __init__(
        self, spec: SourceSpec, predict: Callable[..., PairPrediction], history: History, rule: AlertRule,
        notify: Callable[[dict[str, Any]], None], frame_window: Any, ema_alpha: float = EMA_ALPHA,
        stall_after_s: float = STALL_AFTER_S, settle_s: float = FOLDER_SETTLE_S, open_alert: int | None = None,
    ) -> None:
        self.spec, self.name = spec, spec.name
        self.predict, self.history, self.notify = predict, history, notify
        self.frame_window = frame_window
        self.ema = ExponentialMovingAverage(ema_alpha)
        self.alerts = AlertTracker(rule, active=open_alert is not None)
        self.alert_id = open_alert
        self.stall_after_s = stall_after_s
        self.folder = FolderFeed(spec.folder, settle_s) if spec.folder is not None else None
        self.feeds: dict[str, Any] | None = None
        self.ranges: tuple[Range | None, Range | None] = (None, None)
        self.started = 0.0  # the feeds' clock origin
        self.last_frames: dict[str, Frame] = {}
        self.state, self.reason = "starting", ""
        self.failures, self.retry_at = 0, 0.0
        self.last_pair_at: float | None = None
        self.processed, self.dropped_before = 0, 0
        self.times: deque[float] = deque()
        self.lag_s: float | None = None
        self.latest: PairPrediction | None = None
        self.latest_record: dict[str, Any] | None = None
        self.seq = 0
        self.lock = threading.Lock()  # guards the fields the API reads (snapshot, latest)

    # -- feeds -----------------------------------------------------------------------------------
    def _open(self, now: float) -> None:
        feeds: dict[str, Any] = {}
        try:
            for gas, path in self.spec.gases.items():
                feeds[gas] = StreamFeed(path, time.monotonic) if is_url(path) else FileFeed(path, self.spec.fps, self.spec.loop)
            # A file is one recording: its intensity range where the model's window needs one (as video mode does).
            self.ranges = tuple(
                feeds[gas].source.window_range(self.frame_window) if isinstance(feeds.get(gas), FileFeed) else None for gas in GASES
            )
        except BaseException:
            for feed in feeds.values():
                feed.close()
            raise
        self.feeds, self.started, self.last_frames = feeds, now, {}

    def _close(self) -> None:
        if self.feeds is not None:
            self.dropped_before += sum(f.dropped for f in self.feeds.values())
            for feed in self.feeds.values():
                feed.close()
        self.feeds = None

    def close(self) -> None:
        self._close()

    @property
    def dropped(self) -> int:
        live = self.folder.dropped if self.folder is not None else sum(f.dropped for f in (self.feeds or {}).values())
        return self.dropped_before + live

    def _next_pair(self, now: float) -> tuple[dict[str, np.ndarray], float] | None:
        """The frames of the next pair and how far behind real time they are (seconds), or None."""
        if self.folder is not None:
            wall = time.time()
            found = self.folder.next_pair(wall)
            if found is None:
                return None
            files, stamp = found
            return {gas: load_frame(path) for gas, path in files.items()}, max(0.0, wall - stamp)
        if self.feeds is None:
            self._open(now)
        position = now - self.started
        new = {gas: feed.newest(position) for gas, feed in self.feeds.items()}
        if all(frame is None for frame in new.values()):
            return None
        self.last_frames.update({gas: frame for gas, frame in new.items() if frame is not None})
        if len(self.last_frames) < len(self.feeds):
            return None  # the other gas has shown no frame yet
        frames = self.last_frames
        newest = max(frame.due for frame in frames.values())
        lag = (position - newest) if all(isinstance(f, FileFeed) for f in self.feeds.values()) else (time.monotonic() - newest)
        return {gas: frame.array for gas, frame in frames.items()}, max(0.0, lag)

    # -- the loop ----------------------------------------------------------------------------------
    def step(self, now: float | None = None) -> bool:
        """Process the next pair if one is due at `now` (time.monotonic() by default); False when
        there was none, the source is waiting to retry, or it has ended."""
        now = time.monotonic() if now is None else now
        if self.state == "ended" or now < self.retry_at:
            return False
        if self.last_pair_at is None:
            self.last_pair_at = now  # waiting for a pair starts now (at start, or after a retry)
        began = time.perf_counter()
        try:
            found = self._next_pair(now)
            if found is None:
                self._check_stall(now)
                return False
            arrays, lag = found
            self._process(arrays, lag, now, began)
            return True
        except SourceEnded as err:
            if self.spec.kind == "stream":
                self._fail(now, str(err))
            else:
                self._close()
                self._set_state("ended", str(err))
            return False
        except (FumeError, OSError) as err:
            self._fail(now, str(err))
            return False

    def _process(self, arrays: dict[str, np.ndarray], lag: float, now: float, began: float) -> None:
        """Predict, smooth, store and alert; `lag`: how late the frames were when this step began
        (the time spent here is added: the stored lag is how long after its frame was due a pair was stored)."""
        if len(arrays) == 2 and arrays["co2"].shape != arrays["ch4"].shape:
            (h1, w1), (h2, w2) = arrays["co2"].shape, arrays["ch4"].shape
            raise DataError(f"the CO2 frame is {w1}x{h1} but the CH4 frame is {w2}x{h2}; both cameras must give the same frame size")
        pred = self.predict(arrays.get("co2"), arrays.get("ch4"), sample_id=f"{self.name}-{self.processed}", ranges=self.ranges)
        for gas in arrays:
            pred.gases[gas].source = f"{self.name}/{gas}"
        wall = time.time()
        data = pred.to_dict()
        lag += time.perf_counter() - began
        smoothed = self.ema.update(pred.probabilities) if pred.probabilities is not None else None
        names = list(pred.label_config.class_names)
        record: dict[str, Any] = {
            "time": wall, "source": self.name, "class_name": data["class_name"], "probabilities": data["probabilities"],
            "smoothed_class_name": None if smoothed is None else names[int(np.argmax(smoothed))],
            "smoothed_probabilities": None if smoothed is None else {n: float(p) for n, p in zip(names, smoothed)},
            "lag_s": round(lag, 4),
        }
        for gas in GASES:
            summary = data["gases"][gas]
            record.update({f"{gas}_{key}": summary.get(key) for key in ("plume_area_px", "plume_area_percent", "tube_found")})
        record["id"] = self.history.add_pair(record)
        self._alert(record["smoothed_class_name"], now, wall)
        with self.lock:
            self.latest, self.latest_record, self.lag_s = pred, record, lag
            self.processed += 1
            self.seq += 1
            self.times.append(now)
            while self.times and self.times[0] < now - RATE_WINDOW_S:
                self.times.popleft()
        self.last_pair_at = now
        self.failures = 0
        self._set_state("running", "")

    def _alert(self, class_name: str | None, now: float, wall: float) -> None:
        change = self.alerts.update(class_name, now)
        if change is None:
            return
        rule = self.alerts.rule
        if change == "raised":
            message = f"{self.name}: smoothed class {rule.class_name} for {rule.after_s:g} s"
            self.alert_id = self.history.raise_alert(self.name, rule.class_name, wall, message)
        else:
            message = f"{self.name}: out of {rule.class_name} for {rule.clear_after_s:g} s; alert cleared"
            if self.alert_id is not None:
                self.history.clear_alert(self.alert_id, wall)
        from fume.serve.history import iso

        log.warning(message)
        self.notify({"event": f"alert_{change}", "source": self.name, "class_name": rule.class_name, "alert_id": self.alert_id,
                     "time": iso(wall), "message": message})
        if change == "cleared":
            self.alert_id = None

    def _check_stall(self, now: float) -> None:
        if now - self.last_pair_at >= self.stall_after_s:
            reason = f"no new frame for {now - self.last_pair_at:.0f} s"
            if self.spec.kind == "stream":
                self._fail(now, reason, state="stalled")  # reopened after the backoff
            else:
                self._set_state("stalled", reason)

    def _fail(self, now: float, reason: str, state: str = "failed") -> None:
        if self.folder is None:
            self._close()
        delay = BACKOFF_S[min(self.failures, len(BACKOFF_S) - 1)]
        self.failures += 1
        self.retry_at = now + delay
        self.last_pair_at = None
        self._set_state(state, f"{reason}; retry {self.failures} in {delay:g} s")
        log.warning(f"source {self.name}: {self.reason}")

    def _set_state(self, state: str, reason: str) -> None:
        with self.lock:
            self.state, self.reason = state, reason

    # -- what the API shows --------------------------------------------------------------------------
    def rate(self, now: float | None = None) -> float:
        """Pairs processed per second over the last RATE_WINDOW_S seconds."""
        now = time.monotonic() if now is None else now
        with self.lock:
            recent = [t for t in self.times if t >= now - RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            record = dict(self.latest_record) if self.latest_record else None
            state, reason, processed, seq, lag = self.state, self.reason, self.processed, self.seq, self.lag_s
            gases = [g for g in GASES if self.latest is not None and self.latest.gases[g].present]
        return {
            "name": self.name, "kind": self.spec.kind, "spec": self.spec.describe(), "state": state, "reason": reason,
            "processed": processed, "dropped": self.dropped, "rate_per_s": round(self.rate(), 3),
            "lag_s": None if lag is None else round(lag, 3), "seq": seq, "gases": gases, "latest": record,
            "alert_active": self.alerts.active, "alert_id": self.alert_id,
        }

    def run(self, stop: threading.Event) -> None:
        """The source's thread: step as fast as pairs come, sleep a little when none is due."""
        idle = FOLDER_POLL_S if self.folder is not None else VIDEO_POLL_S
        while not stop.is_set():
            try:
                worked = self.step()
            except Exception as err:  # a bug must not end the thread silently: shown, retried
                log.exception(f"source {self.name}: unexpected error")
                self._fail(time.monotonic(), f"unexpected error: {err!r}")
                worked = False
            if not worked:
                now = time.monotonic()
                stop.wait(min(1.0, max(idle, self.retry_at - now)))
        self._close()
