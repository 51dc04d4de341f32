"""Webhooks: an alert's JSON reaches the receiver, and a receiver that hangs past the timeout
delays neither the processing of frames nor the service."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest

from fume.errors import ConfigError
from fume.serve.alerts import AlertRule, Webhooks
from fume.serve.sources import parse_source

WAIT_S = 30.0  # generous: the machine may be busy


class Receiver:
    """A local HTTP server that records each POST body and holds its answer until `release` is set."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.received = threading.Event()
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                owner.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                owner.received.set()
                owner.release.wait(WAIT_S)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    made = Receiver()
    yield made
    made.close()


def test_a_hanging_webhook_blocks_no_processing(make_service, predictor, sequence: Path, receiver: Receiver) -> None:
    with av.open(str(sequence / "co2.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="gray")
    target = predictor.predict(first, None).class_name  # the smoothed class of the first pair is its class
    service = make_service([parse_source(f"pen=co2:{sequence / 'co2.mp4'},loop")], webhooks=(receiver.url,), webhook_timeout_s=0.5,
                           alert=AlertRule(target, after_s=0.0, clear_after_s=100.0))
    service.webhooks.start()
    source = service.sources["pen"]
    assert source.step(0.0)
    assert source.alerts.active
    assert receiver.received.wait(WAIT_S), "the webhook never arrived"
    body = receiver.bodies[0]
    assert body["event"] == "alert_raised" and body["source"] == "pen" and body["alert_id"] == service.history.alerts("pen")[0]["id"]
    # The receiver still holds the request: processing goes on meanwhile.
    before = source.processed
    assert source.step(1.05) and source.step(2.05) and source.processed == before + 2
    assert not receiver.release.is_set()
    # The request times out (0.5 s) on the webhook thread and is counted as failed, not raised.
    done = threading.Event()
    threading.Thread(target=lambda: (service.webhooks.stop(), done.set()), daemon=True).start()
    assert done.wait(WAIT_S)
    assert service.webhooks.failed == 1 and service.webhooks.sent == 0


def test_webhook_urls_are_checked() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        Webhooks(["file:///etc/passwd"])
    with pytest.raises(ConfigError, match="positive"):
        Webhooks(["http://x"], timeout_s=0)
