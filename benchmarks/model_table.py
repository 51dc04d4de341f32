"""The README's model table: every registry model's model card at one size, as Markdown.

    .venv/bin/python benchmarks/model_table.py [--size 640x480] [--runs 20] [--warmup 5] [--threads 2]

Same figures as `fume model-card NAME`: parameters, GMACs per CO2 + CH4 pair, eager PyTorch CPU
latency (median of --runs calls after --warmup, batch 1, inference mode), as built and prepared for
inference (batch norms folded, channels-last: fume.models.prepare.prepare_for_inference).
"""

from __future__ import annotations

import argparse

from fume.contract import parse_size
from fume.machine import machine_description
from fume.models import list_models
from fume.models.card import model_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    size = parse_size(args.size)

    print(f"<!-- {machine_description()}; size {args.size}; batch 1; {args.runs} runs after {args.warmup} warm-up; "
          f"{args.threads} threads -->")
    print("| model | outputs | parameters | published | GMACs / pair | CPU p50 ms | pairs/s | prepared p50 ms | pairs/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in list_models():
        card = model_card(name, size, runs=args.runs, warmup=args.warmup, threads=args.threads)
        outputs = ", ".join(key.replace("_logits", "") for key in card["outputs"])
        published = (
            f"{card['reference_parameters'] / 1e6:.2f} M ({card['reference_source']})" if card["reference_parameters"] else ""
        )
        print(
            f"| {name} | {outputs} | {card['parameters'] / 1e6:.3f} M | {published} | {card['gmacs_per_pair']:.2f} | "
            f"{card['latency_p50_ms']:.0f} | {card['pairs_per_s']:.1f} | "
            f"{card['prepared_latency_p50_ms']:.0f} | {card['prepared_pairs_per_s']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
