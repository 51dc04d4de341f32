"""Inference-only speed-ups of a PyTorch model that keep its architecture and (up to float
rounding) its outputs: batch norm folded into the preceding convolution, channels_last layout.
ONNX Runtime does the same folding itself at session creation."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) where every Conv2d directly followed by a BatchNorm2d inside an
    nn.Sequential (FUME's ConvBNReLU) becomes one convolution, the BN replaced by Identity."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
    return model


def optimize_for_cpu(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """BN folded and, by default, channels_last weights: oneDNN's convolutions then skip a layout
    conversion per layer (measured about 2x faster for FUME at 640x480 on a 2-core CPU)."""
    model = fold_batch_norm(model)
    return model.to(memory_format=torch.channels_last) if channels_last else model
