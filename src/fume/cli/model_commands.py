"""`fume models` and `fume model-card`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fume.cli import app
from fume.errors import ConfigError

console = Console()


def _parse_options(items: list[str]) -> dict[str, object]:
    """['fusion=concat', 'dropout=0.2'] -> {'fusion': 'concat', 'dropout': 0.2}."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option must be KEY=VALUE such as fusion=concat, got {item!r}")
        for cast in (int, float):
            try:
                options[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            options[key] = value
    return options


@app.command("models")
def models_command() -> None:
    """List every model name with a one-line description."""
    from fume.models import list_models

    table = Table("name", "description", title="FUME models (fume model-card NAME for size and speed)")
    for name, description in list_models().items():
        table.add_row(name, description)
    console.print(table)


@app.command("model-card")
def model_card_command(
    name: str = typer.Argument(..., help="Model name (see `fume models`)."),
    size: str = typer.Option("640x480", help="Frame size WIDTHxHEIGHT, both multiples of 32."),
    option: list[str] = typer.Option([], "--option", "-o", help="Model option KEY=VALUE, e.g. -o fusion=concat."),
    runs: int = typer.Option(20, min=1, help="Timed runs (the median is reported)."),
    warmup: int = typer.Option(5, min=0, help="Untimed runs first."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: torch's)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the card as JSON to this file."),
) -> None:
    """Parameters, GMACs per CO2 + CH4 pair and CPU latency (batch 1, inference mode) of a model,
    as built and prepared for inference (batch norms folded, channels-last)."""
    from fume.contract import parse_size
    from fume.models.card import model_card

    width_height = parse_size(size)
    with console.status(f"measuring {name} at {size} ({warmup} warm-up + {runs} timed runs, twice)"):
        card = model_card(name, width_height, runs=runs, warmup=warmup, threads=threads, **_parse_options(option))

    table = Table(show_header=False, title=f"Model card: {name}")
    table.add_row("options", ", ".join(f"{k}={v}" for k, v in card["options"].items()) or "defaults")
    table.add_row("outputs", ", ".join(card["outputs"]))
    table.add_row("parameters", f"{card['parameters']:,} ({card['parameters'] / 1e6:.3f} M)")
    if card["parameter_difference_pct"] is not None:
        table.add_row(
            "published",
            f"{card['reference_parameters'] / 1e6:.2f} M ({card['reference_source']}); "
            f"ours {card['parameter_difference_pct']:+.1f} %",
        )
    table.add_row("GMACs per pair", f"{card['gmacs_per_pair']:.3f} at {card['size']}")
    table.add_row(
        "CPU latency",
        f"p50 {card['latency_p50_ms']:.1f} ms, p90 {card['latency_p90_ms']:.1f} ms "
        f"({card['pairs_per_s']:.1f} pairs/s; batch 1, {card['runs']} runs, {card['threads']} threads)",
    )
    table.add_row(
        "CPU, prepared",
        f"p50 {card['prepared_latency_p50_ms']:.1f} ms, p90 {card['prepared_latency_p90_ms']:.1f} ms "
        f"({card['prepared_pairs_per_s']:.1f} pairs/s; batch norms folded, channels-last)",
    )
    table.add_row("machine", f"{card['machine']}, torch {card['torch']}")
    if card["note"]:
        table.add_row("note", card["note"])
    console.print(table)

    if json_path is not None:
        from fume.io import write_json

        write_json(json_path, card)
        console.print(f"wrote {json_path}")
