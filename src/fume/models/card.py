"""Model card: parameters, MACs per pair and CPU latency of a registry model, with the figure the
seed or the paper gives for it and, where ours differs by more than 25 %, why."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from fume.errors import ConfigError
from fume.models.complexity import count_macs, count_parameters, example_pair, measure_latency
from fume.models.prepare import prepare_for_inference
from fume.models.inputs import SIZE_MULTIPLE, nearest_valid_sizes
from fume.models.registry import create_model

# Published parameter counts: the paper for FUME, the 2019 paper for Fast-SCNN, the seed for the baselines.
REFERENCE_PARAMETERS: dict[str, tuple[float, str]] = {
    "fume": (1.28e6, "FUME paper"),
    "fastscnn": (1.11e6, "Fast-SCNN paper (19 classes, RGB)"),
    "segmentation_only": (1.3e6, "seed"),
    "classification_only": (1.2e6, "seed"),
    "gas_aware_classifier": (1.25e6, "seed"),
    "early_fusion": (2.6e6, "seed"),
    "multitask_single_stream": (1.4e6, "seed"),
}

NOTES: dict[str, str] = {
    "fume": (
        "Paper: 1.28 M parameters, 1.97 GMACs at 640x480. The fusion's 3x3 conv is depthwise-separable "
        "(a full 3x3 256->128 conv alone has 295 k parameters, more than the published total leaves "
        "beside a Fast-SCNN encoder), and the decoders' shared context branch runs once at H/32."
    ),
    "early_fusion": (
        "The seed's 2.6 M cannot come from its own description: a 2-channel Fast-SCNN encoder has only "
        "288 more weights than the 1-channel one, so one encoder, two decoders and a head give ~1.2 M "
        "(2.6 M would need two encoders or a ~1.5x wider network, which is not early fusion as described)."
    ),
}


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480) = (W, H); ConfigError unless both are positive multiples of 32."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"size must be WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if width <= 0 or height <= 0 or width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        options = ", ".join(f"{w}x{h}" for h, w in nearest_valid_sizes(height, width))
        raise ConfigError(
            f"size {text!r}: width and height must be multiples of {SIZE_MULTIPLE}; nearest valid sizes: {options}"
        )
    return width, height


def machine_description() -> str:
    """CPU model and count, e.g. 'AMD EPYC, 2 CPUs'."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs"


def model_card(
    name: str,
    size: tuple[int, int] = (640, 480),
    runs: int = 20,
    warmup: int = 5,
    threads: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Build `name` with `options` and measure it at size (W, H); a flat, JSON-ready dict."""
    model = create_model(name, **options).eval()
    with torch.no_grad():
        outputs = sorted(model(*example_pair(size)))
    parameters = count_parameters(model)
    macs = count_macs(model, size)
    latency = measure_latency(model, size, runs=runs, warmup=warmup, threads=threads)
    prepared = measure_latency(prepare_for_inference(model), size, runs=runs, warmup=warmup, threads=threads)
    reference, source = REFERENCE_PARAMETERS.get(name, (None, ""))
    difference = None if reference is None or options else 100.0 * (parameters - reference) / reference
    return {
        "model": name,
        "options": options,
        "size": f"{size[0]}x{size[1]}",
        "outputs": outputs,
        "parameters": parameters,
        "gmacs_per_pair": macs / 1e9,
        "latency_p50_ms": latency["p50_ms"],
        "latency_p90_ms": latency["p90_ms"],
        "pairs_per_s": 1000.0 / latency["p50_ms"],
        # The same model with batch norms folded and channels-last weights (prepare_for_inference).
        "prepared_latency_p50_ms": prepared["p50_ms"],
        "prepared_latency_p90_ms": prepared["p90_ms"],
        "prepared_pairs_per_s": 1000.0 / prepared["p50_ms"],
        "runs": runs,
        "warmup": warmup,
        "threads": latency["threads"],
        "batch": 1,
        "reference_parameters": reference,
        "reference_source": source,
        "parameter_difference_pct": difference,
        "note": NOTES.get(name, "") if not options else "",
        "torch": torch.__version__,
        "machine": machine_description(),
    }
