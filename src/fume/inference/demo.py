"""The bundled demo model: a small FUME ONNX file trained on FUME's own synthetic data, so a fresh
install has something to run (`fume predict --model demo`, `fume serve` without --model).

It is made by `python scripts/train_demo_model.py` (in the source repository), which stores how it was
trained and its measured test metrics in the file's metadata under DEMO_META (read with demo_card).
It has never seen a real recording: its outputs on real frames mean nothing. Torch-free.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from fume.errors import FumeError

DEMO_NAME = "demo"  # what --model accepts for the bundled file
DEMO_FILE = "demo.onnx"  # inside the package: fume/assets/demo.onnx
DEMO_META = "fume.demo"  # ONNX metadata key: JSON of how the file was trained and its test metrics
DEMO_NOTICE = (
    "the bundled demo model was trained on FUME's synthetic data only: its classes and masks on real "
    "recordings mean nothing; train on your own data (fume train) for real use"
)


def demo_model_path() -> Path:
    """The bundled ONNX file; FumeError when this install lacks it (e.g. a source tree before
    scripts/train_demo_model.py was run)."""
    path = Path(str(resources.files("fume") / "assets" / DEMO_FILE))
    if not path.is_file():
        raise FumeError(f"the bundled demo model {path} is missing from this install; make it with `python scripts/train_demo_model.py`")
    return path


def is_demo_name(model: str | Path | None) -> bool:
    """True when --model names the bundled demo model: the word `demo` and no file or folder of that name here."""
    return model is not None and str(model) == DEMO_NAME and not Path(model).exists()


def demo_card(path: str | Path | None = None) -> dict[str, Any]:
    """How the demo model was trained and what it measured (its DEMO_META metadata)."""
    import onnxruntime as ort

    path = Path(path) if path is not None else demo_model_path()
    props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    if DEMO_META not in props:
        raise FumeError(f"{path} has no {DEMO_META!r} metadata: not a demo model written by scripts/train_demo_model.py")
    return json.loads(props[DEMO_META])
