"""The service behind `fume serve`: one Predictor shared by the HTTP API and the live sources, the
history, the alert rule and the webhooks. The model runs one pair at a time (a lock around the
backend's call): it already uses every core, and two pairs at once would only make both late; the
rest of a request (decoding, masks at the frame's size, the JSON) goes on beside it."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fume.contract import GASES
from fume.errors import ConfigError
from fume.inference.demo import DEMO_META, DEMO_NOTICE
from fume.inference.predictor import PairPrediction, Predictor
from fume.inference.video import EMA_ALPHA
from fume.serve.alerts import AlertRule, Webhooks
from fume.serve.history import History
from fume.serve.sources import FOLDER_SETTLE_S, STALL_AFTER_S, LiveSource, SourceSpec

DEFAULT_MAX_UPLOAD_BYTES = 20_000_000
DEFAULT_MAX_UPLOAD_PIXELS = 16_000_000  # 4000 x 4000: far above any thermal camera, far below a decompression bomb


@dataclass
class ServeConfig:
    alert: AlertRule = AlertRule()
    webhooks: tuple[str, ...] = ()
    webhook_timeout_s: float = 5.0
    ema_alpha: float = EMA_ALPHA
    stall_after_s: float = STALL_AFTER_S
    folder_settle_s: float = FOLDER_SETTLE_S
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS


class SerialBackend:
    """A Predictor's backend called by one thread at a time; its other attributes pass through."""

    def __init__(self, backend: Any, lock: threading.Lock) -> None:
        self.backend, self.lock = backend, lock

    def __call__(self, *inputs: np.ndarray) -> dict[str, np.ndarray]:
        with self.lock:
            return self.backend(*inputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


class Service:
    def __init__(self, predictor: Predictor, db: str | Path, specs: list[SourceSpec], config: ServeConfig | None = None) -> None:
        self.lock = threading.Lock()
        self.predictor = copy.copy(predictor)  # the caller's Predictor keeps its own backend
        self.predictor.backend = SerialBackend(predictor.backend, self.lock)
        self.config = config or ServeConfig()
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"--source names must differ; got {names}")
        if self.config.alert.class_name not in predictor.label_config.class_names:
            raise ConfigError(f"--alert-class {self.config.alert.class_name!r} is not one of the model's classes {predictor.label_config.class_names}")
        self.history = History(db)
        self.webhooks = Webhooks(list(self.config.webhooks), self.config.webhook_timeout_s)
        self.started_at = time.time()
        open_alerts = self.history.open_alerts()
        self.sources = {
            spec.name: LiveSource(
                spec, self.predict, self.history, self.config.alert, self.webhooks.send, predictor.frame_window,
                self.config.ema_alpha, self.config.stall_after_s, self.config.folder_settle_s, open_alerts.get(spec.name),
            )
            for spec in specs
        }
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    @property
    def model(self) -> dict[str, Any]:
        """The model's file name and, for the bundled demo model, the notice the dashboard shows."""
        demo = DEMO_META in getattr(self.predictor.backend, "metadata", {})
        return {"name": Path(self.predictor.source).name, "demo": demo, "notice": DEMO_NOTICE if demo else None}

    @property
    def class_names(self) -> list[str]:
        return list(self.predictor.label_config.class_names)

    def predict(self, co2: np.ndarray | None, ch4: np.ndarray | None, sample_id: str | None = None, ranges: Any = (None, None)) -> PairPrediction:
        return self.predictor.predict(co2, ch4, sample_id=sample_id, ranges=ranges)

    def start(self) -> None:
        """Start the webhooks' thread and one thread per source."""
        self.webhooks.start()
        for source in self.sources.values():
            thread = threading.Thread(target=source.run, args=(self.stop_event,), name=f"fume-source {source.name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(10.0)
        self.threads = []
        for source in self.sources.values():
            source.close()
        self.webhooks.stop()
        self.history.close()

    def health(self) -> dict[str, Any]:
        states = [s.snapshot()["state"] for s in self.sources.values()]
        bad = sum(state in ("failed", "stalled") for state in states)
        return {"status": "degraded" if bad else "ok", "sources": len(states), "sources_failed_or_stalled": bad,
                "uptime_s": round(time.time() - self.started_at, 1)}


def overlay_image(pred: PairPrediction, gas: str, format: str = ".jpg") -> bytes:
    """One gas's overlay (fume predict's overlay) encoded as JPEG or PNG."""
    import cv2

    from fume.inference.batch import pair_overlay

    if gas not in GASES or not pred.gases[gas].present:
        raise KeyError(gas)
    ok, encoded = cv2.imencode(format, pair_overlay(pred, gas))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the {gas} overlay as {format}")
    return encoded.tobytes()
