"""Model card: parameters, MACs per pair and CPU latency of a registry model, with the figure the
seed or the paper gives for it and, where ours differs by more than 25 %, why."""

from __future__ import annotations

from typing import Any

import torch

from fume.machine import machine_description
from fume.models.complexity import count_macs, count_parameters, measure_latency
from fume.models.prepare import prepare_for_inference
from fume.models.registry import create_model, model_entry


def model_card(
    name: str,
    size: tuple[int, int] = (640, 480),
    runs: int = 20,
    warmup: int = 5,
    threads: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Build `name` with `options` and measure it at size (W, H); a flat, JSON-ready dict."""
    entry = model_entry(name)
    model = create_model(name, **options).eval()
    outputs = sorted(model.output_names)
    parameters = count_parameters(model)
    macs = count_macs(model, size)
    latency = measure_latency(model, size, runs=runs, warmup=warmup, threads=threads)
    prepared = measure_latency(prepare_for_inference(model), size, runs=runs, warmup=warmup, threads=threads)
    # The published figures describe the default build only.
    reference, source = (entry.reference.parameters, entry.reference.source) if entry.reference else (None, "")
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
        "note": entry.note if not options else "",
        "torch": torch.__version__,
        "machine": machine_description(),
    }
