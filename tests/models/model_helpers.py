"""Shared helpers for the model tests."""

from __future__ import annotations

import torch
from torch import nn


def make_nontrivial(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random batch-norm statistics and affine terms, and non-zero attention gains, so every
    path of the model (attention starts at gamma = 0) changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
            gamma = getattr(module, "gamma", None)
            if isinstance(gamma, nn.Parameter):
                gamma.fill_(0.5)
        for name, param in model.named_parameters():
            if name.endswith("gas_embedding"):
                param.copy_(torch.randn(param.shape, generator=generator))
    return model


def random_pair(batch: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, height, width, generator=generator), torch.rand(batch, 1, height, width, generator=generator)
