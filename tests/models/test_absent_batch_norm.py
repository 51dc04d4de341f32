"""Batch statistics during training: an absent (zeroed) gas frame must not enter the batch-norm
statistics of the present frames, and pyramid pooling must train at batch size 1."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fume.models import create_model
from fume.models.blocks import PyramidPooling
from fume.models.registry import list_models

H, W = 64, 96


def _standardised(frame: np.ndarray) -> np.ndarray:
    return (frame - frame.mean()) / max(frame.std(ddof=1), 1e-3)


def test_first_encoder_batch_norm_statistics_come_from_present_frames_only():
    torch.manual_seed(0)
    model = create_model("fume").train()
    rng = np.random.default_rng(0)
    co2 = rng.random((2, 1, H, W), dtype=np.float32)
    ch4 = rng.random((2, 1, H, W), dtype=np.float32)
    mask = np.array([[1, 1], [1, 0]], np.float32)  # pair 1 has no CH4 frame
    first = model.encoder.downsample[0]
    conv, norm = first[0], first[1]
    momentum = norm.momentum
    model(torch.from_numpy(co2), torch.from_numpy(ch4), torch.from_numpy(mask))

    # Independent reference: numpy standardisation of the three present frames, the first conv,
    # and the mean over batch and positions that BatchNorm's running mean takes a step towards.
    present = [co2[0, 0], co2[1, 0], ch4[0, 0]]
    x = torch.from_numpy(np.stack([_standardised(f) for f in present])[:, None].astype(np.float32))
    with torch.no_grad():
        features = F.conv2d(x, conv.weight, stride=2, padding=1)
    expected = momentum * features.mean(dim=(0, 2, 3))
    torch.testing.assert_close(norm.running_mean, expected, rtol=1e-4, atol=1e-6)
    # Had the zeroed frame been in the batch, its all-zero features would pull the mean to 3/4.
    assert not torch.allclose(norm.running_mean, 0.75 * expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["fume", "segmentation_only"])
def test_a_gas_decoder_normalises_over_the_pairs_that_have_that_gas(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    seen = {}
    for gas in ("co2", "ch4"):
        norm = model.decoders[gas].fusion.detail[1]
        norm.register_forward_hook(lambda module, args, out, gas=gas: seen.__setitem__(gas, args[0].shape[0]))
    co2, ch4 = torch.rand(3, 1, H, W), torch.rand(3, 1, H, W)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    outputs = model(co2, ch4, mask)
    assert seen == {"co2": 3, "ch4": 1}
    assert torch.equal(outputs["ch4_seg_logits"][1:], torch.zeros_like(outputs["ch4_seg_logits"][1:]))
    # No pair has CH4: its decoder does not run (no statistics from nothing) and gives zeros.
    seen.clear()
    outputs = model(co2, ch4, torch.tensor([[1.0, 0.0]] * 3))
    assert seen == {"co2": 3}
    assert not outputs["ch4_seg_logits"].any()


def test_eval_mode_runs_every_frame_as_before():
    torch.manual_seed(0)
    model = create_model("fume").eval()
    co2, ch4 = torch.rand(2, 1, H, W), torch.rand(2, 1, H, W)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    with torch.no_grad():
        together = model(co2, ch4, mask)
        alone = model(co2[:1], ch4[:1], mask[:1])
    for key in together:  # in eval mode each pair is independent of the others in its batch
        torch.testing.assert_close(together[key][:1], alone[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(list_models()))
@pytest.mark.parametrize("mask", [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
def test_every_model_trains_on_a_single_pair(name, mask):
    torch.manual_seed(0)
    model = create_model(name).train()
    outputs = model(torch.rand(1, 1, H, W), torch.rand(1, 1, H, W), torch.tensor([mask]))
    loss = sum(v.float().pow(2).mean() for v in outputs.values())
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_pyramid_pooling_at_batch_size_1_normalises_the_global_bin_with_running_statistics():
    torch.manual_seed(0)
    ppm = PyramidPooling(16, 16)
    with torch.no_grad():
        for branch in ppm.branches:
            branch[1].running_mean.uniform_(-0.5, 0.5)
            branch[1].running_var.uniform_(0.5, 1.5)
    before = [b[1].running_mean.clone() for b in ppm.branches]
    x = torch.randn(1, 16, 6, 8, requires_grad=True)
    out = ppm.train()(x)
    out.sum().backward()
    assert out.shape == (1, 16, 6, 8) and torch.isfinite(out).all()
    assert ppm.branches[0][0].weight.grad is not None and ppm.branches[0][0].weight.grad.abs().sum() > 0
    # Bin 1 (one value per channel): running statistics used and left as they were ...
    torch.testing.assert_close(ppm.branches[0][1].running_mean, before[0], rtol=0, atol=0)
    # ... the other bins have several values per channel and update theirs.
    assert all(not torch.equal(b[1].running_mean, m) for b, m in zip(ppm.branches[1:], before[1:]))
    # The bin-1 branch equals its eval-mode computation by hand: conv, running-statistics BN, ReLU.
    conv, norm = ppm.branches[0][0], ppm.branches[0][1]
    pooled = x.detach().mean(dim=(2, 3), keepdim=True)
    z = F.conv2d(pooled, conv.weight)
    by_hand = F.relu((z - norm.running_mean.view(1, -1, 1, 1)) / torch.sqrt(norm.running_var.view(1, -1, 1, 1) + norm.eps)
                     * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(ppm._branch(ppm.branches[0], pooled), by_hand)
