"""The `fume` command. Each area registers its sub-commands on `app` in its own module;
heavy imports (torch, lightning) happen inside the commands so `fume --help` stays fast."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from fume.errors import FumeError

app = typer.Typer(
    name="fume",
    help="FUME: dual-gas optical gas imaging for rumen acidosis detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def main() -> None:
    # Imported for their side effect: registering commands on `app`.
    from fume.cli import data_commands, inference_commands, model_commands, report_commands, train_commands  # noqa: F401

    try:
        app()
    except FumeError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(1)
