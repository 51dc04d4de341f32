"""`fume serve` (registered on fume.cli.app): the monitoring service (fume.serve)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

import typer

from fume.cli import app, check_out_file
from fume.errors import ConfigError
from fume.logs import get_logger

log = get_logger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_port(host: str, port: int) -> None:
    """Refuse at once an address that cannot be listened on (before any source starts)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConfigError(f"--host {host}: {err.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}") from None


@app.command("serve")
def serve_command(
    model: Optional[Path] = typer.Option(None, "--model", help="An ONNX file (fume export) or a model folder (fume publish); default: the bundled demo model (synthetic data only)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-k", help="A .ckpt written by fume train (instead of --model)"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token"),
    port: int = typer.Option(8000, "--port", help="TCP port"),
    sources: list[str] = typer.Option([], "--source", help="A live source NAME=SPEC, e.g. pen1=co2:a.mp4,ch4:b.mp4,loop | pen2=co2:rtsp://...,ch4:rtsp://... | pen3=folder:/srv/cam3 (repeatable)"),
    db: Path = typer.Option(Path("fume_history.sqlite"), "--db", help="SQLite file of the history (kept across restarts)"),
    token: Optional[str] = typer.Option(None, "--token", envvar="FUME_TOKEN", help="Token every request must carry (env FUME_TOKEN)"),
    alert_class: str = typer.Option("Acidotic", "--alert-class", help="Smoothed class that raises an alert"),
    alert_after: float = typer.Option(60.0, "--alert-after", help="Seconds the smoothed class must hold before the alert is raised"),
    alert_clear_after: float = typer.Option(30.0, "--alert-clear-after", help="Seconds out of the class before the alert clears"),
    webhooks: list[str] = typer.Option([], "--webhook", help="URL an alert is POSTed to as JSON (repeatable)"),
    webhook_timeout: float = typer.Option(5.0, "--webhook-timeout", help="Seconds a webhook may take"),
    ema_alpha: Optional[float] = typer.Option(None, "--ema-alpha", help="Weight of the newest pair in the smoothed probabilities (default 0.1, as fume predict's video mode)"),
    stall_after: float = typer.Option(10.0, "--stall-after", help="Seconds without a new frame before a source is marked stalled"),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest upload accepted by POST /api/predict (MB)"),
    max_upload_pixels: int = typer.Option(16_000_000, "--max-upload-pixels", help="Largest uploaded image (width x height), checked before decoding"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for the model (default: all cores)"),
) -> None:
    """The monitoring service: HTTP API (POST /api/predict, /api/sources, /api/history, /docs),
    a dashboard at / of live sources, alerts (stored, sent to webhooks) and history in SQLite."""
    from fume.inference.demo import DEMO_NOTICE, demo_model_path
    from fume.inference.video import EMA_ALPHA
    from fume.serve.alerts import AlertRule
    from fume.serve.service import ServeConfig
    from fume.serve.sources import parse_source

    if not is_loopback(host) and not token:
        raise ConfigError(f"--host {host} is reachable from other machines: give --token TOKEN (or set FUME_TOKEN) so requests must carry it")
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    if max_upload_mb <= 0 or max_upload_pixels <= 0:
        raise ConfigError("--max-upload-mb and --max-upload-pixels must be positive")
    if model is not None and checkpoint is not None:
        raise ConfigError("give one of --model FILE.onnx|DIR|demo or --checkpoint CKPT (neither: the bundled demo model)")
    if model is None and checkpoint is None:  # the bundled file itself, whatever the current folder holds
        model = demo_model_path()
        log.warning(f"model: {DEMO_NOTICE}")
    check_out_file(db, "--db")
    specs = [parse_source(text) for text in sources]
    config = ServeConfig(
        alert=AlertRule(alert_class, alert_after, alert_clear_after), webhooks=tuple(webhooks), webhook_timeout_s=webhook_timeout,
        ema_alpha=EMA_ALPHA if ema_alpha is None else ema_alpha, stall_after_s=stall_after,
        max_upload_bytes=int(max_upload_mb * 1e6), max_upload_pixels=max_upload_pixels,
    )
    run_service(model, checkpoint, host, port, specs, db, token, config, threads)


def run_service(model, checkpoint, host, port, specs, db, token, config, threads) -> None:
    import uvicorn

    from fume.cli.inference_commands import _predictor
    from fume.serve.app import create_app
    from fume.serve.service import Service

    if model is not None and model.is_file():
        predictor = _predictor(None, model, None, threads)
    else:
        predictor = _predictor(checkpoint, None, None, threads, model)
    check_port(host, port)
    service = Service(predictor, db, specs, config)
    log.info(f"model {predictor.source}; history in {db}; {len(specs)} source(s)" + (f": {', '.join(s.name for s in specs)}" if specs else ""))
    log.info(f"dashboard: http://{host}:{port}/" + ("?token=..." if token else "") + f"  API docs: http://{host}:{port}/docs")
    service.start()
    try:
        # uvicorn handles Ctrl-C / SIGTERM itself and returns: the service then stops cleanly.
        uvicorn.run(create_app(service, token), host=host, port=port, log_level="warning", access_log=False)
    finally:
        service.stop()
