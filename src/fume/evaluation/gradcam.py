"""Where the classifier looks: Grad-CAM (Selvaraju et al. 2017) of the predicted class on FUME's
fused context (the output of `model.fusion`, 128 channels at 1/32 of the input).

For a pair, with A the fused context (C, h, w) and y the logit of the predicted class:
alpha_c = mean over positions of dy/dA_c, map = ReLU(sum_c alpha_c A_c), bilinearly resized to
the frames' native size and divided by its maximum (all zeros when nothing speaks for the class).
The context is shared by both gases, so one map is drawn over the CO2 and the CH4 frame.

The pairs go through the Predictor's own path (frame reading, intensity window, resizing), with a
backend that runs the PyTorch model with gradients and keeps the map of each pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fume.contract import CLS_OUTPUT


class GradCamBackend:
    """A Predictor backend (co2, ch4, modality mask -> outputs) that also leaves the Grad-CAM maps of
    the last batch in `maps` ((B, h, w), not yet normalised) and the channel weights alpha in
    `weights` ((B, C))."""

    def __init__(self, model: Any) -> None:
        if getattr(model, "fusion", None) is None or CLS_OUTPUT not in getattr(model, "output_names", ()):
            raise ValueError(f"Grad-CAM on the fused context needs a classifying FUME model; {type(model).__name__} has no fusion or class output")
        self.model = model.eval()
        self.maps: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def __call__(self, co2: np.ndarray, ch4: np.ndarray, modality_mask: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        kept: dict[str, torch.Tensor] = {}
        handle = self.model.fusion.register_forward_hook(lambda _module, _inputs, output: kept.setdefault("context", output))
        try:
            with torch.enable_grad():
                outputs = self.model(*(torch.from_numpy(np.asarray(a, np.float32)) for a in (co2, ch4, modality_mask)))
                logits, context = outputs[CLS_OUTPUT], kept["context"]
                chosen = logits.argmax(1, keepdim=True)
                gradients = torch.autograd.grad(logits.gather(1, chosen).sum(), context)[0]
        finally:
            handle.remove()
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        self.maps = torch.relu((weights * context).sum(1)).detach().numpy()
        self.weights = weights[:, :, 0, 0].detach().numpy()
        return {name: value.detach().numpy() for name, value in outputs.items()}


def native_map(cam: np.ndarray, native_hw: tuple[int, int]) -> np.ndarray:
    """A (h, w) map resized bilinearly to (H, W) and scaled to [0, 1] by its maximum."""
    import cv2

    resized = cv2.resize(cam.astype(np.float32), (int(native_hw[1]), int(native_hw[0])), interpolation=cv2.INTER_LINEAR)
    peak = float(resized.max())
    return np.clip(resized / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(resized)


def gradcam_pairs(model: Any, config: Any, pairs: Sequence[tuple[Any, Any, str | None]]) -> list[dict[str, Any]]:
    """Grad-CAM of the predicted class for each (co2, ch4, sample_id) (frames as paths or arrays):
    one dict per pair with sample_id, pred_class, co2_frame / ch4_frame (8-bit display, None for an
    absent gas) and cam ((H, W) in [0, 1] at the native size)."""
    from fume.inference.predictor import Predictor

    predictor = Predictor.from_model(model, config)
    backend = GradCamBackend(model)
    predictor.backend = backend
    rows = []
    for co2, ch4, sample_id in pairs:
        prediction = predictor.predict(co2, ch4, sample_id)
        gases = prediction.gases
        shape = next(g.frame.shape for g in gases.values() if g.present)
        assert backend.maps is not None
        rows.append({
            "sample_id": prediction.sample_id, "pred_class": prediction.class_id, "cam": native_map(backend.maps[0], shape),
            **{f"{gas}_frame": gases[gas].display if gases[gas].present else None for gas in ("co2", "ch4")},
        })
    return rows
