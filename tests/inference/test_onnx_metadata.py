"""The metadata of an ONNX file is checked against its graph on load: class names that do not
match cls_logits, invalid JSON, an invalid label section or a frame size other than the inputs'
are refused with a one-line FumeError naming the file. Also hostile inputs through `fume predict`
(a decompression bomb, a file name that is not UTF-8), which need this folder's fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_files import write_bomb_png  # tests/ is on sys.path (tests/conftest.py)
from typer.testing import CliRunner

from fume.cli import app
from fume.config import LabelConfig
from fume.errors import DataError, FumeError
from fume.inference.backends import META_CONFIG, META_IMAGE_SIZE
from fume.inference.predictor import Predictor


def with_metadata(source: Path, out: Path, **changes: str | None) -> Path:
    """A copy of the ONNX file `source` with metadata entries replaced (None: removed)."""
    import onnx

    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        key = {"config": META_CONFIG, "image_size": META_IMAGE_SIZE}[key]
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    return out


def stored_config(onnx_export) -> dict:
    import onnx

    model = onnx.load(str(onnx_export.onnx_path))
    return json.loads({p.key: p.value for p in model.metadata_props}[META_CONFIG])


def refused(path: Path, *expected: str, **kwargs) -> str:
    with pytest.raises(FumeError) as err:
        Predictor.from_onnx(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    for text in expected:
        assert text in message, message
    return message


def test_the_exported_file_loads(onnx_export) -> None:
    predictor = Predictor.from_onnx(onnx_export.onnx_path)
    assert predictor.label_config == LabelConfig()
    assert predictor.backend.num_classes == 3


def test_class_names_must_match_the_outputs(onnx_export, tmp_path: Path) -> None:
    config = stored_config(onnx_export)
    config["data"]["labels"] = {"class_names": ["Healthy", "Acidotic"], "ph_to_class": {"6.5": 0, "5.0": 1}}
    path = with_metadata(onnx_export.onnx_path, tmp_path / "two.onnx", config=json.dumps(config))
    refused(path, "2 stored class names ['Healthy', 'Acidotic']", "cls_logits has 3 classes")
    # Class names given by the caller are checked too.
    two = LabelConfig(class_names=["a", "b"], ph_to_class={6.5: 0, 5.0: 1})
    refused(onnx_export.onnx_path, "2 class names given", "cls_logits has 3 classes", label_config=two)
    # Four names are as wrong as two.
    config["data"]["labels"] = {"class_names": list("abcd"), "ph_to_class": {"6.5": 0}}
    path = with_metadata(onnx_export.onnx_path, tmp_path / "four.onnx", config=json.dumps(config))
    refused(path, "4 stored class names", "3 classes")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is a JSON list; expected an object"),
        (json.dumps({"data": {"labels": {"class_names": ["a", "b", "c"], "colour": 1}}}), "labels is not a valid label section (colour: Extra inputs"),
        (json.dumps({"data": {"labels": {"class_names": ["a", "b", "c"], "ph_to_class": {"6.5": 7}}}}), "not a valid label section"),
        (json.dumps({"data": {"labels": "Healthy,Acidotic"}}), "data.labels is a str; expected an object"),
    ],
)
def test_invalid_stored_config_is_refused(onnx_export, tmp_path: Path, raw: str, expected: str) -> None:
    path = with_metadata(onnx_export.onnx_path, tmp_path / "bad.onnx", config=raw)
    refused(path, expected, META_CONFIG if "JSON" in expected else "")


def test_stored_image_size_must_match_the_inputs(onnx_export, tmp_path: Path) -> None:
    w, h = onnx_export.image_size
    path = with_metadata(onnx_export.onnx_path, tmp_path / "size.onnx", image_size=f"{w * 2}x{h}")
    refused(path, f"{META_IMAGE_SIZE!r} = '{w * 2}x{h}'", f"inputs are {w}x{h}")
    path = with_metadata(onnx_export.onnx_path, tmp_path / "garbled.onnx", image_size="big")
    refused(path, "is not WIDTHxHEIGHT")
    config = stored_config(onnx_export)
    config["data"]["image_size"] = [640, 480]
    path = with_metadata(onnx_export.onnx_path, tmp_path / "config_size.onnx", config=json.dumps(config))
    refused(path, "stored data.image_size = [640, 480]", f"inputs are {w}x{h}")


def test_a_file_without_metadata_uses_the_default_classes(onnx_export, tmp_path: Path) -> None:
    path = with_metadata(onnx_export.onnx_path, tmp_path / "bare.onnx", config=None, image_size=None)
    assert Predictor.from_onnx(path).label_config == LabelConfig()


def test_the_cli_prints_one_line(onnx_export, tmp_path: Path) -> None:
    path = with_metadata(onnx_export.onnx_path, tmp_path / "bad.onnx", config="{not json")
    result = CliRunner().invoke(app, ["predict", "--onnx", str(path), "--co2", str(tmp_path / "x_co2.png"), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, FumeError) and "is not valid JSON" in str(result.exception)


def test_predict_refuses_a_decompression_bomb_by_name(onnx_export, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_bomb_png(folder / "bomb_co2.png")
    result = CliRunner().invoke(app, ["predict", "--onnx", str(onnx_export.onnx_path), "--input", str(folder), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, DataError), result.output
    message = str(result.exception)
    assert "bomb_co2.png" in message and "400000000 pixels" in message and "\n" not in message
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_a_file_name_that_is_not_utf8_does_not_lose_the_batch(onnx_export, tmp_path: Path) -> None:
    import os

    import pandas as pd

    folder = tmp_path / "in"
    folder.mkdir()
    import numpy as np
    from PIL import Image

    frame = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)).save(frame)
    odd = Path(os.fsdecode(os.fsencode(str(folder)) + b"/pair_\xff_co2.png"))
    try:
        odd.write_bytes(frame.read_bytes())
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    (folder / "plain_co2.png").write_bytes(frame.read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", "--onnx", str(onnx_export.onnx_path), "--input", str(folder), "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 2
    assert sorted(Path(p).name for p in table["co2_frame"]) == ["pair_\\xff_co2.png", "plain_co2.png"]
    [sample] = [s for s in table["sample_id"] if s != "plain"]
    saved = json.loads((out / "json" / f"{sample}.json").read_text(encoding="utf-8"))
    assert os.fsencode(saved["gases"]["co2"]["source"]).endswith(b"/pair_\xff_co2.png")  # the exact bytes
    assert (out / "overlays" / f"{sample}_co2.png").is_file()
