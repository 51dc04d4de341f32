"""POST /api/predict against the Predictor itself, the read endpoints, bad uploads and the token."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hostile_files import write_bomb_png  # tests/ is on sys.path (tests/conftest.py)
from PIL import Image

from fume.data.frames import load_frame
from fume.serve.app import create_app


def frame_files(sequence: Path, index: int = 3) -> dict[str, Path]:
    return {gas: sequence / gas / f"frame_{index:05d}.png" for gas in ("co2", "ch4")}


def upload(files: dict[str, Path]) -> dict[str, tuple[str, bytes, str]]:
    return {gas: (path.name, path.read_bytes(), "image/png") for gas, path in files.items()}


def test_predict_returns_the_predictors_json(client: TestClient, predictor, sequence: Path) -> None:
    files = frame_files(sequence)
    response = client.post("/api/predict", files=upload(files))
    assert response.status_code == 200, response.text
    expected = predictor.predict(files["co2"], files["ch4"], sample_id="frame").to_dict()
    got = response.json()
    for gas in ("co2", "ch4"):  # the client's file name stands where fume predict gives the path
        assert got["gases"][gas].pop("source") == files[gas].name
        expected["gases"][gas].pop("source")
    expected["sample_id"] = got["sample_id"]
    assert got == expected
    assert got["sample_id"] == "frame_00003"  # fume predict's name for the pair: default_sample_id


def test_one_gas_and_overlays(client: TestClient, predictor, sequence: Path) -> None:
    files = frame_files(sequence)
    response = client.post("/api/predict?overlays=true", files=upload({"ch4": files["ch4"]}))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["modality_mask"] == [0.0, 1.0] and data["gases"]["co2"] == {"present": False}
    assert set(data["overlays"]) == {"ch4"}
    png = base64.b64decode(data["overlays"]["ch4"].split(",", 1)[1])
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert image.shape == (*load_frame(files["ch4"]).shape, 3)


def test_bad_uploads_each_get_a_4xx_and_a_message(client: TestClient, sequence: Path, tmp_path: Path) -> None:
    good = frame_files(sequence)["co2"].read_bytes()
    bomb = write_bomb_png(tmp_path / "bomb.png", 16384, 16384).read_bytes()
    cases = {
        "empty": ({"co2": ("a.png", b"", "image/png")}, 400, "empty"),
        "truncated": ({"co2": ("a.png", good[: len(good) // 2], "image/png")}, 400, "cannot read"),
        "16k x 16k": ({"co2": ("bomb.png", bomb, "image/png")}, 413, "the limit is 16 megapixels (--max-upload-pixels)"),
        "text file": ({"co2": ("notes.txt", b"hello, not an image\n" * 20, "text/plain")}, 400, "expected an image"),
        "wrong field": ({"image": ("a.png", good, "image/png")}, 422, "got field(s) image"),
        "no field": ({}, 422, "co2 and/or ch4"),
    }
    for name, (files, status, words) in cases.items():
        response = client.post("/api/predict", files=files) if files else client.post("/api/predict", data={"x": "1"})
        assert response.status_code == status, (name, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and words in detail, (name, detail)
        assert "fume-upload-" not in detail, (name, detail)  # no temporary path leaks


def test_upload_over_the_byte_limit_is_refused_before_reading(make_service, sequence: Path) -> None:
    files = frame_files(sequence)
    with TestClient(create_app(make_service(max_upload_bytes=1000))) as client:
        response = client.post("/api/predict", files=upload(files))
    assert response.status_code == 413 and "over the limit of 1000 bytes" in response.json()["detail"]


def test_frames_of_different_sizes(client: TestClient, sequence: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(small)
    response = client.post("/api/predict", files=upload({"co2": frame_files(sequence)["co2"], "ch4": small}))
    assert response.status_code == 400 and "same size" in response.json()["detail"]


def test_token_guards_every_request_but_health(make_service, sequence: Path) -> None:
    app = create_app(make_service(), token="s3cret")
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        for path in ("/", "/api/sources", "/api/history", "/api/alerts", "/docs", "/openapi.json", "/static/dashboard.js"):
            response = client.get(path)
            assert response.status_code == 401, path
        assert client.post("/api/predict", files=upload(frame_files(sequence))).status_code == 401
        assert client.get("/api/sources", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/sources", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        # Opening the dashboard once with ?token= sets the cookie the page's own requests then carry.
        assert client.get("/?token=s3cret").status_code == 200
        assert client.cookies.get("fume_token") == "s3cret"
        assert client.get("/api/sources").status_code == 200
        assert client.post("/api/predict", files=upload(frame_files(sequence))).status_code == 200


def test_dashboard_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "static/dashboard.js" in page.text and "static/uPlot.iife.min.js" in page.text
    for name in ("dashboard.js", "dashboard.css", "uPlot.iife.min.js", "uPlot.min.css"):
        assert client.get(f"/static/{name}").status_code == 200, name
    assert client.get("/static/../app.py").status_code == 404
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/sources", "/api/history", "/api/alerts", "/health"} <= set(spec["paths"])


def test_sources_name_the_model_and_warn_of_the_demo_model(client: TestClient, tmp_path: Path) -> None:
    from fume.inference.demo import DEMO_NOTICE, demo_model_path
    from fume.inference.predictor import Predictor
    from fume.serve.service import Service

    assert client.get("/api/sources").json()["model"] == {"name": "fume.onnx", "demo": False, "notice": None}
    service = Service(Predictor.from_onnx(demo_model_path(), threads=1), tmp_path / "demo.sqlite", [])
    try:
        with TestClient(create_app(service)) as demo_client:
            assert demo_client.get("/api/sources").json()["model"] == {"name": "demo.onnx", "demo": True, "notice": DEMO_NOTICE}
    finally:
        service.stop()


def test_history_filters_and_csv(make_service) -> None:
    service = make_service()
    for i, (source, cls) in enumerate([("a", "Healthy"), ("b", "Acidotic"), ("a", "Acidotic")]):
        service.history.add_pair({"time": 1000.0 + i, "source": source, "class_name": cls, "probabilities": {"Healthy": 0.5, "Transitional": 0.25, "Acidotic": 0.25},
                                  "smoothed_class_name": cls, "co2_plume_area_px": 10 * i, "co2_tube_found": True})
    with TestClient(create_app(service)) as client:
        rows = client.get("/api/history", params={"source": "a"}).json()["rows"]
        assert [r["time"] for r in rows] == [1000.0, 1002.0] and rows[1]["class_name"] == "Acidotic"
        assert rows[0]["probabilities"] == {"Healthy": 0.5, "Transitional": 0.25, "Acidotic": 0.25}
        assert rows[0]["co2_tube_found"] is True and rows[0]["ch4_tube_found"] is None
        iso = client.get("/api/history", params={"since": "1970-01-01T00:16:41Z"}).json()["rows"]  # 1001 s
        assert [r["time"] for r in iso] == [1001.0, 1002.0]
        assert client.get("/api/history", params={"since": "yesterday"}).status_code == 422
        csv = client.get("/api/history", params={"format": "csv", "source": "b"})
        assert csv.headers["content-type"].startswith("text/csv") and "attachment" in csv.headers["content-disposition"]
        lines = csv.text.splitlines()
        assert lines[0].startswith("time_utc,time,source,class_name,prob_healthy,prob_transitional,prob_acidotic,smoothed_class_name")
        assert len(lines) == 2 and lines[1].startswith("1970-01-01T00:16:41.000+00:00,1001.0,b,Acidotic,0.5,0.25,0.25,Acidotic")
        assert client.get("/api/sources/nope/overlay/co2.jpg").status_code == 404


def test_history_points_spread_over_the_period(make_service) -> None:
    service = make_service()
    for i in range(100):
        service.history.add_pair({"time": float(i), "source": "a", "class_name": "Healthy"})
    times = [r["time"] for r in service.history.pairs("a", points=10)]
    assert times == [float(i) for i in range(9, 100, 10)]  # ids 10, 20, ... 100: every 10th row over the whole period
    assert [r["time"] for r in service.history.pairs("a", since=50.0, points=10)] == [float(i) for i in range(54, 100, 5)]
    assert len(service.history.pairs("a", points=1000)) == 100


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "farm-pc.local"])
def test_a_reachable_host_needs_a_token(host: str, onnx_model: Path, tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from fume.cli import app

    monkeypatch.delenv("FUME_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--model", str(onnx_model), "--host", host, "--db", str(tmp_path / "h.sqlite")])
    assert result.exit_code != 0
    assert "give --token" in str(result.exception)
    assert not (tmp_path / "h.sqlite").exists()


def test_the_model_runs_one_pair_at_a_time_and_the_callers_predictor_is_untouched(predictor, make_service, sequence: Path) -> None:
    """The service calls the backend under its lock (two pairs at once would only make both late);
    decoding and masks stay outside it. The Predictor handed in keeps its own backend."""
    service = make_service()
    assert service.predictor.backend is not predictor.backend and service.predictor.backend.backend is predictor.backend
    assert service.predictor.backend.metadata is predictor.backend.metadata  # what the service reads of the model passes through
    seen = []
    inner = service.predictor.backend.backend

    def backend(*inputs):
        seen.append(service.lock.locked())
        return inner(*inputs)

    service.predictor.backend.backend = backend
    frames = {gas: load_frame(path) for gas, path in frame_files(sequence).items()}
    got = service.predict(frames["co2"], frames["ch4"])
    assert seen == [True] and not service.lock.locked()
    np.testing.assert_array_equal(got.probabilities, predictor.predict(frames["co2"], frames["ch4"]).probabilities)
