"""Building blocks shared by every FUME model: the Fast-SCNN parts and the attention modules.

All blocks are export-friendly: no Python branch on tensor values, shapes only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Convolution + batch norm (+ ReLU)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        relu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(W2 relu(W1 gap(x))), one weight per channel."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive_avg_pool2d(x, 1) rather than mean(): it exports as GlobalAveragePool, which ONNX
        # Runtime runs in its blocked conv layout (no layout conversions around each SE block).
        w = F.adaptive_avg_pool2d(x, 1)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return x * spread_for_export(w, x)


_SPREAD_GATES = True  # see spread_gates_on_export


@contextmanager
def spread_gates_on_export(enabled: bool) -> Iterator[None]:
    """Whether an export inside this block spreads the gates (spread_for_export). Off for a graph
    that will be quantized: ONNX Runtime's int8 kernels have no blocked layout, and there the
    spread only adds a full-size resize per gate (profiled: 1.6 ms for the first SE block alone)."""
    global _SPREAD_GATES
    before, _SPREAD_GATES = _SPREAD_GATES, bool(enabled)
    try:
        yield
    finally:
        _SPREAD_GATES = before


def spread_for_export(gate: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B, C, 1, 1) or (B, 1, H, W) gate brought to the shape of `like` (B, C, H, W) while
    exporting to ONNX, unchanged otherwise (broadcasting gives the same product).

    ONNX Runtime runs convolutions in a blocked channel layout (NCHWc) but multiplies there only
    tensors of one shape: a broadcasting Mul made it convert the feature map to NCHW and back around
    every squeeze-excitation and fusion gate (profiled: 53 layout conversions, 2 ms of FUME's 28 ms
    at 640x480). A nearest resize with constant integer scales (the spatial spread) and a 1x1
    convolution with weights of one (the channel spread) both run in the blocked layout.
    """
    if not (_SPREAD_GATES and torch.onnx.is_in_onnx_export()):
        return gate
    channels, height, width = (int(d) for d in like.shape[1:])
    if gate.shape[1] == 1 and channels > 1:
        gate = F.conv2d(gate, torch.ones(channels, 1, 1, 1, dtype=gate.dtype))
    if tuple(gate.shape[2:]) != (height, width):
        gate = F.interpolate(gate, scale_factor=(height / int(gate.shape[2]), width / int(gate.shape[3])), mode="nearest")
    return gate


class DSConv(nn.Sequential):
    """Depthwise-separable conv: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU (+ SE)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, se: bool = False) -> None:
        layers: list[nn.Module] = [
            ConvBNReLU(in_channels, in_channels, 3, stride, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1),
        ]
        if se:
            layers.append(ChannelAttention(out_channels))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck as in Fast-SCNN: expand 1x1, depthwise 3x3 (stride), project 1x1 (+ SE).

    The residual is used when the block keeps resolution and width.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 6, se: bool = False):
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = [
            ConvBNReLU(in_channels, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
            ConvBNReLU(hidden, out_channels, 1, relu=False),
        ]
        if se:
            layers.append(ChannelAttention(out_channels))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


@lru_cache(maxsize=256)
def _adaptive_pool_rows(length: int, bins: int) -> tuple[tuple[float, ...], ...]:
    # The exact bin edges of adaptive_avg_pool: [floor(i*L/b), ceil((i+1)*L/b)).
    rows = []
    for i in range(bins):
        start = (i * length) // bins
        end = -((-(i + 1) * length) // bins)
        rows.append(tuple(1.0 / (end - start) if start <= j < end else 0.0 for j in range(length)))
    return tuple(rows)


def adaptive_pool_matrix(length: int, bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(bins, length) matrix M such that M @ v averages v over the adaptive-pool bins."""
    return torch.tensor(_adaptive_pool_rows(length, bins), dtype=dtype, device=device)


def adaptive_avg_pool2d_matmul(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Same result as F.adaptive_avg_pool2d(x, bins), as two matrix products.

    ONNX has no adaptive pooling, and torch.onnx.export refuses it when the size is not
    divisible by the bins (15x20 at 480x640 / 32); the pooling matrices are built from the
    input size, which is static at export.
    """
    h, w = x.shape[-2], x.shape[-1]
    pool_h = adaptive_pool_matrix(int(h), bins, x.dtype, x.device)
    pool_w = adaptive_pool_matrix(int(w), bins, x.dtype, x.device)
    return torch.matmul(torch.matmul(pool_h, x), pool_w.t())


class PyramidPooling(nn.Module):
    """Fast-SCNN pyramid pooling: pool to each bin size, 1x1 conv to C/4, upsample, concat, 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.bins = tuple(bins)
        branch_channels = in_channels // len(self.bins)
        self.branches = nn.ModuleList(ConvBNReLU(in_channels, branch_channels, 1) for _ in self.bins)
        self.project = ConvBNReLU(in_channels + branch_channels * len(self.bins), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(self._branch(branch, adaptive_avg_pool2d_matmul(x, b)), size=size, mode="bilinear", align_corners=False)
            for b, branch in zip(self.bins, self.branches)
        ]
        return self.project(torch.cat([x, *pooled], dim=1))

    def _branch(self, branch: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
        """conv + BN + ReLU on a pooled map. A map holding one value per channel (bin 1 at batch
        size 1) has no batch statistics (its variance is 0 and BatchNorm refuses it): there the
        running statistics normalise it, as at inference, and are left unchanged."""
        if not (self.training and pooled.shape[0] * pooled.shape[2] * pooled.shape[3] == 1):
            return branch(pooled)
        conv, norm, *rest = branch
        if not isinstance(norm, nn.BatchNorm2d):
            return branch(pooled)
        out = F.batch_norm(conv(pooled), norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
        for layer in rest:
            out = layer(out)
        return out


class ContextBranch(nn.Module):
    """Fast-SCNN feature fusion, context side: depthwise 3x3 + 1x1 conv (+ BN) on the low-resolution
    context, brought to the resolution of the detail features.

    upsample_first=True is the 2019 order (upsample x4, then convolve at H/8). False convolves at
    H/32 and upsamples afterwards: the same operations on 16x fewer pixels (FUME computes this
    once and shares it between both gases' decoders).
    """

    def __init__(self, in_channels: int, out_channels: int, upsample_first: bool = True) -> None:
        super().__init__()
        self.upsample_first = upsample_first
        self.convs = nn.Sequential(
            ConvBNReLU(in_channels, in_channels, 3, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1, relu=False),
        )

    def forward(self, context: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        if self.upsample_first:
            return self.convs(F.interpolate(context, size=size, mode="bilinear", align_corners=False))
        return blocked_for_export(F.interpolate(self.convs(context), size=size, mode="bilinear", align_corners=False))


def blocked_for_export(x: torch.Tensor) -> torch.Tensor:
    """x, through a depthwise 1x1 convolution with weights of one while exporting to ONNX (with
    spread_for_export's switch): the same values, produced in ONNX Runtime's blocked layout. A
    bilinear resize's output is plain NCHW; the fusion's sum with it was done in NCHW, with the other
    full-size term converted out of the blocked layout and the result converted back."""
    if not (_SPREAD_GATES and torch.onnx.is_in_onnx_export()):
        return x
    channels = int(x.shape[1])
    return F.conv2d(x, torch.ones(channels, 1, 1, 1, dtype=x.dtype), groups=channels)


class FeatureFusion(nn.Module):
    """Fast-SCNN feature fusion, detail side: ReLU(BN(1x1 conv(detail)) + context).

    With attention=True (FUME's attention-based feature fusion) a spatial map computed from the
    context, sigmoid(1x1 conv), decides where the gas's own detail passes.
    """

    def __init__(self, low_channels: int, out_channels: int, attention: bool = False) -> None:
        super().__init__()
        self.detail = ConvBNReLU(low_channels, out_channels, 1, relu=False)
        self.gate = nn.Sequential(nn.Conv2d(out_channels, 1, 1), nn.Sigmoid()) if attention else None

    def forward(self, low: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        detail = self.detail(low)
        if self.gate is not None:
            detail = detail * spread_for_export(self.gate(context), detail)
        return F.relu(detail + context)


class SegmentationHead(nn.Module):
    """Fast-SCNN classifier: 2 x DSConv, dropout, 1x1 conv to the classes (at H/8)."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            DSConv(channels, channels), DSConv(channels, channels), nn.Dropout(dropout), nn.Conv2d(channels, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ClassificationHead(nn.Module):
    """Global average pool -> MLP (in -> hidden -> classes)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive_avg_pool2d rather than mean(): GlobalAveragePool runs in ONNX Runtime's blocked layout.
        return self.mlp(F.adaptive_avg_pool2d(x, 1).flatten(1) if x.dim() == 4 else x)


class _AttentionBase(nn.Module):
    """Scaled dot-product attention over the H x W positions of a feature map, with a learned
    residual gain gamma that starts at 0 (so training starts from the plain features)."""

    def __init__(self, channels: int, key_channels: int | None = None) -> None:
        super().__init__()
        key_channels = key_channels or max(8, channels // 8)
        self.query = nn.Conv2d(channels, key_channels, 1)
        self.key = nn.Conv2d(channels, key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.scale = 1.0 / math.sqrt(key_channels)

    def attend(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """softmax(Q(x) K(source)^T / sqrt(d)) V(source), back in x's (B, C, H, W) layout.

        Two batched matrix products on the (B, channels, N) maps rather than
        scaled_dot_product_attention: the scale is a constant and no (B, heads, N, d) reshapes are
        needed, so the exported graph has 12 nodes per attention instead of 46 (mostly shape
        arithmetic that ONNX Runtime ran one by one)."""
        q = self.query(x).flatten(2)  # (B, d, N)
        k = self.key(source).flatten(2)
        v = self.value(source).flatten(2)  # (B, C, N)
        weights = torch.softmax(torch.matmul(q.transpose(1, 2), k) * self.scale, dim=-1)  # (B, N query, N key)
        return torch.matmul(v, weights.transpose(1, 2)).reshape(x.shape)


class SelfAttention(_AttentionBase):
    """F + gamma * V softmax(Q K^T / sqrt(d)), all from the same stream."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.attend(x, x)


class CrossModalAttention(_AttentionBase):
    """F_a + gamma * (source_present * V_b softmax(Q_a K_b^T / sqrt(d))): stream a attends to b.

    `source_present` (B,) zeroes the term when the other gas is absent, so that gas's content
    cannot reach stream a.
    """

    def forward(self, x: torch.Tensor, source: torch.Tensor, source_present: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * source_present.view(-1, 1, 1, 1) * self.attend(x, source)


def init_weights(module: nn.Module) -> None:
    """Kaiming init for convolutions, unit BN, small linear layers (the usual Fast-SCNN set-up)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.in_features))
            nn.init.zeros_(m.bias)
