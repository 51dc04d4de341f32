import math

import pytest
import torch
import torch.nn.functional as F

from fume.models.blocks import ChannelAttention, CrossModalAttention, InvertedResidual, PyramidPooling, SelfAttention, adaptive_avg_pool2d_matmul
from fume.models.fastscnn import FastSCNNEncoder


@pytest.mark.parametrize("height,width", [(15, 20), (2, 3), (1, 1), (7, 5), (6, 6), (4, 9)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_matmul_pooling_equals_adaptive_avg_pool(height, width, bins):
    x = torch.randn(2, 5, height, width, dtype=torch.float64)
    expected = F.adaptive_avg_pool2d(x, bins)
    torch.testing.assert_close(adaptive_avg_pool2d_matmul(x, bins), expected, rtol=0, atol=1e-12)


def test_pyramid_pooling_keeps_size_and_sets_channels():
    ppm = PyramidPooling(128, 128).eval()
    assert ppm(torch.randn(1, 128, 15, 20)).shape == (1, 128, 15, 20)


def test_channel_attention_matches_hand_computed_squeeze_excitation():
    se = ChannelAttention(16, reduction=4)
    x = torch.randn(2, 16, 5, 7)
    z = x.mean(dim=(2, 3))
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias
    weights = torch.sigmoid(F.relu(z @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(se(x), x * weights[:, :, None, None])


def _reference_attention(attn, x, source):
    b, c, h, w = x.shape
    q = torch.einsum("oc,bcn->bno", attn.query.weight.flatten(1), x.flatten(2)) + attn.query.bias
    k = torch.einsum("oc,bcn->bno", attn.key.weight.flatten(1), source.flatten(2)) + attn.key.bias
    v = torch.einsum("oc,bcn->bno", attn.value.weight.flatten(1), source.flatten(2)) + attn.value.bias
    a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
    return (a @ v).transpose(1, 2).reshape(b, c, h, w)


def test_self_attention_starts_as_identity_and_matches_reference():
    attn = SelfAttention(32)
    x = torch.randn(2, 32, 3, 4)
    assert torch.equal(attn(x), x)  # gamma starts at 0
    with torch.no_grad():
        attn.gamma.fill_(0.7)
    torch.testing.assert_close(attn(x), x + 0.7 * _reference_attention(attn, x, x), rtol=1e-5, atol=1e-5)


def test_cross_attention_uses_the_other_stream_only_when_present():
    attn = CrossModalAttention(32)
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    x, other = torch.randn(2, 32, 3, 4), torch.randn(2, 32, 3, 4)
    out = attn(x, other, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out[0], (x + _reference_attention(attn, x, other))[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(out[1], x[1])


def test_inverted_residual_adds_input_only_when_shape_is_kept():
    same = InvertedResidual(16, 16).eval()
    with torch.no_grad():
        for p in same.block.parameters():
            p.zero_()  # the block's branch outputs zero, leaving the residual
    x = torch.randn(1, 16, 8, 8)
    assert torch.equal(same(x), x)
    assert not InvertedResidual(16, 24).use_residual
    assert InvertedResidual(16, 16, stride=2)(x).shape == (1, 16, 4, 4)


@pytest.mark.parametrize("height,width", [(64, 64), (96, 128), (480, 640)])
def test_fastscnn_encoder_feature_sizes(height, width):
    low, high = FastSCNNEncoder(1).eval()(torch.randn(1, 1, height, width))
    assert low.shape == (1, 64, height // 8, width // 8)
    assert high.shape == (1, 128, height // 32, width // 32)
