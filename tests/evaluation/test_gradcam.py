"""Grad-CAM on the fused context against finite differences of the class logit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fume.config import load_config
from fume.contract import CLS_OUTPUT
from fume.evaluation.gradcam import GradCamBackend, gradcam_pairs, native_map
from fume.models.checkpoint import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model(load_config(None, ["data.image_size=[64,64]"]).model).eval()
    with torch.no_grad():  # a trained-like head: the fresh one's logits are ~1e-10, below float32 finite differences
        for layer in net.classifier.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 1.0)
    return net


def test_channel_weights_equal_finite_differences_of_the_logit(model):
    rng = np.random.default_rng(0)
    co2, ch4 = (rng.random((1, 1, 64, 64), dtype=np.float32) for _ in range(2))
    mask = np.ones((1, 2), np.float32)
    backend = GradCamBackend(model)
    outputs = backend(co2, ch4, mask)
    chosen = int(outputs[CLS_OUTPUT][0].argmax())
    kept = {}
    handle = model.fusion.register_forward_hook(lambda m, i, o: kept.setdefault("a", o))
    with torch.no_grad():
        model(*(torch.from_numpy(x) for x in (co2, ch4, mask)))
    handle.remove()
    context = kept["a"]

    def logit_with(channel: int, delta: float) -> float:
        """The logit of the chosen class with `delta` added to one channel of the fused context."""
        shifted = context.clone()
        shifted[:, channel] += delta
        hook = model.fusion.register_forward_hook(lambda m, i, o: shifted)
        with torch.no_grad():
            value = float(model(*(torch.from_numpy(x) for x in (co2, ch4, mask)))[CLS_OUTPUT][0, chosen])
        hook.remove()
        return value

    # alpha_c = mean over positions of d logit / d A_c = (d logit / d shift of the whole channel) / (h w);
    # the step is small against the context's own scale (tiny in a fresh network), so no ReLU flips.
    hw = context.shape[2] * context.shape[3]
    step = 1e-3 * float(context.abs().max())
    alpha = np.array([(logit_with(c, step) - logit_with(c, -step)) / (2 * step * hw) for c in range(context.shape[1])])
    np.testing.assert_allclose(backend.weights[0], alpha, rtol=2e-2, atol=2e-3 * np.abs(alpha).max())
    assert np.abs(alpha).max() > 0
    expected = np.maximum((backend.weights[0][:, None, None] * context[0].numpy()).sum(0), 0)
    np.testing.assert_allclose(backend.maps[0], expected, rtol=1e-5, atol=1e-7)


def test_maps_are_at_native_size_in_unit_range(model):
    config = load_config(None, ["data.image_size=[64,64]"])
    rng = np.random.default_rng(1)
    frame = (rng.random((48, 80)) * 255).astype(np.uint8)
    rows = gradcam_pairs(model, config, [(frame, frame, "a"), (frame, None, "b")])
    for row in rows:
        assert row["cam"].shape == (48, 80) and row["cam"].min() >= 0 and row["cam"].max() <= 1
    assert rows[1]["ch4_frame"] is None and rows[1]["co2_frame"].shape == (48, 80)
    assert native_map(np.zeros((2, 3)), (4, 6)).max() == 0
