"""Alerts: a source whose smoothed class stays `class_name` for `after_s` seconds raises one alert;
it clears once the smoothed class has been something else for `clear_after_s` seconds (the
hysteresis: a smoothed class that flickers around the boundary neither raises nor clears a storm
of alerts). Raised alerts are stored (fume.serve.history) and POSTed as JSON to the webhooks.

Webhooks are sent by one background thread from a bounded queue, each with a timeout: a slow or
dead receiver delays the other notifications, never the processing of frames.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any

from fume.errors import ConfigError
from fume.logs import get_logger

log = get_logger(__name__)
WEBHOOK_QUEUE = 100  # notifications waiting at most; older ones are dropped (and logged) beyond it


@dataclass(frozen=True)
class AlertRule:
    class_name: str = "Acidotic"
    after_s: float = 60.0  # the smoothed class must hold this long before an alert is raised
    clear_after_s: float = 30.0  # and must have left the class this long before it clears

    def __post_init__(self) -> None:
        if self.after_s < 0 or self.clear_after_s < 0:
            raise ConfigError(f"alert durations must not be negative, got {self.after_s} and {self.clear_after_s}")


class AlertTracker:
    """One source's alert state. update() takes each processed pair's smoothed class and its time
    (seconds, any clock that only goes forward) and says what changed: "raised", "cleared" or None."""

    def __init__(self, rule: AlertRule, active: bool = False) -> None:
        self.rule = rule
        self.active = active
        self.since: float | None = None  # when the current run of in-class (or out-of-class, when active) pairs began

    def update(self, class_name: str | None, at: float) -> str | None:
        # While inactive we time how long the class holds; while active, how long it has been left.
        watching = (class_name == self.rule.class_name) != self.active
        if not watching:
            self.since = None
            return None
        if self.since is None:
            self.since = at
        if at - self.since < (self.rule.clear_after_s if self.active else self.rule.after_s):
            return None
        self.active, self.since = not self.active, None
        return "raised" if self.active else "cleared"


class Webhooks:
    """POSTs JSON payloads to every URL from a background thread (start() / stop())."""

    def __init__(self, urls: list[str], timeout_s: float = 5.0) -> None:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--webhook {url!r} must be an http:// or https:// URL")
        if timeout_s <= 0:
            raise ConfigError(f"--webhook-timeout must be positive, got {timeout_s}")
        self.urls = list(urls)
        self.timeout_s = timeout_s
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(WEBHOOK_QUEUE)
        self.thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        if self.urls and self.thread is None:
            self.thread = threading.Thread(target=self._run, name="fume-webhooks", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(self.timeout_s * len(self.urls) + 1)
            self.thread = None

    def send(self, payload: dict[str, Any]) -> None:
        """Queue a notification; returns at once."""
        if not self.urls:
            return
        while True:
            try:
                self.queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    dropped = self.queue.get_nowait()
                    log.warning(f"webhook queue full; dropped the notification {dropped}")
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while (payload := self.queue.get()) is not None:
            body = json.dumps(payload).encode()
            for url in self.urls:
                request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                        response.read(1024)
                    self.sent += 1
                except Exception as err:  # any failure of a receiver is logged, never raised into the service
                    self.failed += 1
                    log.warning(f"webhook {url} failed: {err}")
