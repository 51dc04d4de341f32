"""The HTTP side of `fume serve` (FastAPI): the API, the dashboard and their protection.

    POST /api/predict              multipart fields co2 and/or ch4 (images) -> fume predict's per-pair JSON
                                   (?overlays=true adds base64 PNG overlays)
    GET  /api/sources              the model (with the demo model's notice) and each live source: state,
                                   rate, latest smoothed class and areas
    GET  /api/sources/NAME/overlay/GAS.jpg   the latest overlay of a source
    GET  /api/history?source=&since=&limit=&points=&format=csv    stored pairs (JSON, or CSV to download)
    GET  /api/alerts?source=&since=
    GET  /health                   status only (no token needed: for monitoring)
    GET  /                         the dashboard;  /docs  the OpenAPI documentation

With a token (`--token` / FUME_TOKEN) every request but /health must carry it: the header
`Authorization: Bearer TOKEN`, or the `fume_token` cookie that opening the dashboard once as
/?token=TOKEN sets (so the browser's image and data requests carry it), or ?token=TOKEN.
Uploads are refused above max_upload_bytes (413, from Content-Length, before the body is read)
and above max_upload_pixels (413, from the image header, before decoding:
fume.data.frames' decompression-bomb check). No endpoint takes a file path: sources and the
database are chosen on the command line only.
"""

from __future__ import annotations

import base64
import hmac
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from fume.contract import GASES
from fume.data.frames import IMAGE_SUFFIXES, ImageTooLargeError, load_frame
from fume.errors import ConfigError, DataError
from fume.inference.predictor import default_sample_id
from fume.serve.history import pairs_csv, parse_time
from fume.serve.service import Service, overlay_image

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "fume_token"
OPEN_PATHS = frozenset({"/health"})


def create_app(service: Service, token: str | None = None) -> FastAPI:
    app = FastAPI(
        title="FUME", summary="Rumen health from dual-gas optical gas imaging: predictions, live sources, history and alerts.",
        version="1", docs_url="/docs", redoc_url=None,
    )
    app.state.service = service

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token and request.url.path not in OPEN_PATHS:
            given = _given_token(request)
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong token: send `Authorization: Bearer TOKEN` or open /?token=TOKEN once"}, 401)
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "uploads need a Content-Length header"}, 411)
            if not length.isdigit() or int(length) > service.config.max_upload_bytes:
                return JSONResponse({"detail": f"upload of {length} bytes is over the limit of {service.config.max_upload_bytes} bytes"}, 413)
        response = await call_next(request)
        if token and request.query_params.get("token") and request.url.path == "/":
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/health", summary="Service status (open without token)")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post("/api/predict", summary="Predict one pair of uploaded frames (fume predict's per-pair JSON)")
    async def predict(
        request: Request,
        co2: Optional[UploadFile] = File(None, description="CO2 frame (PNG, JPEG, TIFF, BMP)"),
        ch4: Optional[UploadFile] = File(None, description="CH4 frame (PNG, JPEG, TIFF, BMP)"),
        overlays: bool = Query(False, description="Add the overlays as base64 PNG (overlays.co2, overlays.ch4)"),
    ) -> dict[str, Any]:
        form = await request.form()
        unknown = sorted(set(form.keys()) - set(GASES))
        if unknown or (co2 is None and ch4 is None):
            got = f"; got field(s) {', '.join(unknown)}" if unknown else "; got none"
            raise HTTPException(422, f"send the frames as multipart fields co2 and/or ch4{got}")
        uploads = {gas: (f.filename or gas, await f.read()) for gas, f in (("co2", co2), ("ch4", ch4)) if f is not None}
        # Decoding and the model run in a worker thread: the event loop stays free for the dashboard.
        return await run_in_threadpool(_predict_uploads, service, uploads, overlays)

    @app.get("/api/sources", summary="The model and the live sources: state, processing rate, latest smoothed class and plume areas")
    def sources() -> dict[str, Any]:
        return {"class_names": service.class_names, "model": service.model, "alert": asdict(service.config.alert),
                "sources": [s.snapshot() for s in service.sources.values()]}

    @app.get("/api/sources/{name}/overlay/{gas}.jpg", summary="The latest overlay of a source", response_class=Response)
    def source_overlay(name: str, gas: str) -> Response:
        source = service.sources.get(name)
        if source is None:
            raise HTTPException(404, f"no source named {name!r}; sources: {', '.join(service.sources) or 'none'}")
        with source.lock:
            pred = source.latest
        try:
            image = overlay_image(pred, gas) if pred is not None else None
        except KeyError:
            image = None
        if image is None:
            raise HTTPException(404, f"source {name} has no {gas} frame yet")
        return Response(image, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/history", summary="Stored pairs, oldest first (JSON, or format=csv to download)")
    def history(
        source: Optional[str] = Query(None, description="A source name (default: all)"),
        since: Optional[str] = Query(None, description="Unix seconds or ISO 8601 date-time (UTC unless a zone is given)"),
        limit: int = Query(10_000, ge=1, le=100_000, description="The newest this many rows"),
        points: Optional[int] = Query(None, ge=1, le=100_000, description="About this many rows spread evenly over the period (for plots)"),
        format: str = Query("json", pattern="^(json|csv)$"),
    ) -> Any:
        rows = service.history.pairs(source, _since(since), limit, points)
        if format == "csv":
            name = f"fume_history_{source or 'all'}.csv"
            return PlainTextResponse(pairs_csv(rows, service.class_names), media_type="text/csv",
                                     headers={"Content-Disposition": f'attachment; filename="{name}"'})
        return {"rows": rows}

    @app.get("/api/alerts", summary="Stored alerts, oldest first")
    def alerts(source: Optional[str] = None, since: Optional[str] = None, limit: int = Query(1000, ge=1, le=100_000)) -> dict[str, Any]:
        return {"alerts": service.history.alerts(source, _since(since), limit)}

    return app


def _predict_uploads(service: Service, uploads: dict[str, tuple[str, bytes]], overlays: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fume-upload-") as tmp:
        arrays = {gas: _read_upload(gas, name, data, Path(tmp), service.config.max_upload_pixels) for gas, (name, data) in uploads.items()}
    names = {gas: name for gas, (name, _) in uploads.items()}
    try:
        pred = service.predict(arrays.get("co2"), arrays.get("ch4"), sample_id=default_sample_id(names.get("co2"), names.get("ch4")))
    except DataError as err:  # frames of different sizes
        raise HTTPException(400, str(err)) from None
    for gas, name in names.items():
        pred.gases[gas].source = name
    data = pred.to_dict()
    if overlays:
        data["overlays"] = {gas: "data:image/png;base64," + base64.b64encode(overlay_image(pred, gas, ".png")).decode() for gas in uploads}
    return data


def _given_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE) or request.query_params.get("token")


def _since(value: str | None) -> float | None:
    try:
        return parse_time(value)
    except ConfigError as err:
        raise HTTPException(422, str(err)) from None


def _read_upload(gas: str, filename: str, data: bytes, folder: Path, max_pixels: int) -> Any:
    """The uploaded frame as fume.data.frames.load_frame reads a file (its pixel limit checked from
    the header before decoding); HTTPException 400/413 naming the field otherwise."""
    label = f"{gas} upload {filename}"
    if not data:
        raise HTTPException(400, f"{label} is empty; expected an image (PNG, JPEG, TIFF, BMP)")
    suffix = Path(filename).suffix.lower()
    path = folder / f"{gas}{suffix if suffix in IMAGE_SUFFIXES else '.img'}"
    path.write_bytes(data)
    try:
        return load_frame(path, max_pixels=max_pixels)
    except ImageTooLargeError as err:
        raise HTTPException(413, f"{label}: {_without(err, path)}".replace("(data.max_image_pixels)", "(--max-upload-pixels)")) from None
    except DataError as err:
        raise HTTPException(400, f"{label}: {_without(err, path)}; expected an image (PNG, JPEG, TIFF, BMP)") from None


def _without(err: Exception, path: Path) -> str:
    """The error's message without the temporary file's name (the client's file name is in the label)."""
    return str(err).replace(f" {path}", "").replace(str(path), "the upload")
