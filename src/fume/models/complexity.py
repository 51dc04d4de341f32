"""Model size and cost: parameters, multiply-accumulates per CO2 + CH4 pair, CPU latency."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fume.contract import check_size
from fume.machine import time_calls


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (all of them, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def example_pair(size: tuple[int, int] = (640, 480), batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random (co2, ch4, modality_mask) input with both gases present; size is (W, H)."""
    width, height = size
    check_size(height, width)
    generator = torch.Generator().manual_seed(0)
    co2 = torch.rand(batch, 1, height, width, generator=generator)
    ch4 = torch.rand(batch, 1, height, width, generator=generator)
    return co2, ch4, torch.ones(batch, 2)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def count_macs(model: nn.Module, size: tuple[int, int] = (640, 480)) -> int:
    """Multiply-accumulates for one pair (batch 1, both gases present) at size (W, H), counted
    with torch.utils.flop_counter (convolutions, matrix products, attention; MACs = FLOPs / 2)."""
    counter = FlopCounterMode(display=False)
    with _eval_mode(model), torch.no_grad(), counter:
        model(*example_pair(size))
    return counter.get_total_flops() // 2


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_latency(
    model: nn.Module, size: tuple[int, int] = (640, 480), runs: int = 20, warmup: int = 5, threads: int | None = None
) -> dict[str, float]:
    """Eager CPU latency of one pair (batch 1) in inference mode: median and 90th percentile of
    `runs` timed calls after `warmup` untimed ones. Returns p50_ms, p90_ms, mean_ms, runs, threads."""
    inputs = example_pair(size)
    with _eval_mode(model), torch.inference_mode(), _threads(threads):
        timing = time_calls({"model": lambda: model(*inputs)}, runs=runs, warmup=warmup)["model"]
        used_threads = torch.get_num_threads()
    return {key: timing[key] for key in ("p50_ms", "p90_ms", "mean_ms", "runs")} | {"threads": used_threads}
