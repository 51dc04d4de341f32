"""The ONNX runtime path imports no PyTorch: Predictor.from_onnx, batch and video prediction
(fume predict --onnx) and fume serve run in a subprocess where importing torch fails, and give
today's results (classes and probabilities equal; masks equal but for pixels whose two best
classes are within OpenCV's and PyTorch's resize rounding)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

BLOCKED = ("torch", "lightning", "torchmetrics", "albumentations", "torchvision")

SCRIPT = """
import json, sys
from pathlib import Path
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
sys.meta_path.insert(0, Blocker())
import numpy as np
from fastapi.testclient import TestClient
from fume.inference.batch import PairInput, predict_pairs
from fume.inference.predictor import Predictor
from fume.inference.video import predict_video
from fume.serve.app import create_app
from fume.serve.service import Service
model, seq, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
predictor = Predictor.from_onnx(model, threads=1)
pred = predictor.predict(seq / "co2/frame_00004.png", seq / "ch4/frame_00004.png")
np.savez(out / "pair.npz", probabilities=pred.probabilities, co2=pred.gases["co2"].mask, ch4=pred.gases["ch4"].mask)
pairs = [PairInput(f"p{{i}}", seq / f"co2/frame_0000{{i}}.png", seq / f"ch4/frame_0000{{i}}.png") for i in range(3)]
predict_pairs(predictor, pairs, out / "batch", overlays=True)
predict_video(predictor, out / "video", co2=seq / "co2.mp4", ch4=seq / "ch4.mp4", write_video=True)
service = Service(predictor, out / "h.sqlite", [])
with TestClient(create_app(service)) as client:
    files = {{g: (f"{{g}}.png", (seq / g / "frame_00004.png").read_bytes(), "image/png") for g in ("co2", "ch4")}}
    answer = client.post("/api/predict?overlays=true", files=files)
    assert answer.status_code == 200, answer.text
    (out / "api.json").write_text(answer.text)
service.stop()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
print(json.dumps(loaded))
"""


def test_onnx_path_runs_without_torch(onnx_model: Path, sequence: Path, predictor, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=BLOCKED), str(onnx_model), str(sequence), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

    # The same calls here, where PyTorch is installed (today's path).
    from fume.inference.batch import PairInput, predict_pairs
    from fume.inference.video import predict_video

    pred = predictor.predict(sequence / "co2/frame_00004.png", sequence / "ch4/frame_00004.png")
    runtime = np.load(tmp_path / "pair.npz")
    np.testing.assert_allclose(runtime["probabilities"], pred.probabilities, rtol=1e-5, atol=1e-7)
    for gas in ("co2", "ch4"):
        assert pred.gases[gas].mask.shape == runtime[gas].shape != (64, 64)  # resized back to the frame's 96x72
        assert np.mean(runtime[gas] == pred.gases[gas].mask) >= 0.999
    api = json.loads((tmp_path / "api.json").read_text())
    assert api["class_name"] == pred.class_name and set(api["overlays"]) == {"co2", "ch4"}

    pairs = [PairInput(f"p{i}", sequence / f"co2/frame_0000{i}.png", sequence / f"ch4/frame_0000{i}.png") for i in range(3)]
    predict_pairs(predictor, pairs, tmp_path / "batch_torch", overlays=False)
    predict_video(predictor, tmp_path / "video_torch", co2=sequence / "co2.mp4", ch4=sequence / "ch4.mp4", write_video=False)
    for without, with_torch in (("batch/predictions.csv", "batch_torch/predictions.csv"), ("video/video_predictions.csv", "video_torch/video_predictions.csv")):
        a, b = pd.read_csv(tmp_path / without), pd.read_csv(tmp_path / with_torch)
        classes = [c for c in a.columns if c.endswith("class_name")]
        assert classes and a[classes].equals(b[classes]), without
        probs = [c for c in a.columns if "prob_" in c]
        np.testing.assert_allclose(a[probs].to_numpy(), b[probs].to_numpy(), rtol=1e-5, atol=1e-7)
        areas = [c for c in a.columns if c.endswith("plume_area_px")]
        np.testing.assert_allclose(a[areas].to_numpy(), b[areas].to_numpy(), rtol=0, atol=0.001 * 96 * 72)


CLI = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Blocker())
from fume.cli import main
sys.argv = ["fume", *sys.argv[1:]]
main()
"""


def test_commands_that_need_training_say_which_extra(onnx_model: Path, sequence: Path, tmp_path: Path) -> None:
    def fume(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", CLI.format(blocked=BLOCKED), *args], capture_output=True, text=True, timeout=300)

    ok = fume("predict", "--onnx", str(onnx_model), "--co2", str(sequence / "co2/frame_00001.png"), "--out", str(tmp_path / "pred"))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "pred" / "predictions.csv").is_file()
    needs = fume("predict", "--checkpoint", str(tmp_path / "none.ckpt"), "--co2", str(sequence / "co2/frame_00001.png"), "--out", str(tmp_path / "p2"))
    assert needs.returncode == 1
    lines = [line for line in needs.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: this needs torch") and 'pip install "fume[train]"' in lines[0], needs.stderr
