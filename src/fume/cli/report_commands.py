"""`fume experiments` (grids of variants x seeds) and `fume report` (tables, CIs, figures).
Heavy imports happen inside the commands so `fume --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fume.cli import app, check_out_folder
from fume.logs import get_logger

log = get_logger(__name__)


def _split_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """Grid files and dotted overrides (anything with '=') may come in any order."""
    grids = [a for a in arguments if "=" not in a]
    overrides = [a for a in arguments if "=" in a]
    return grids, overrides


def _parse_seeds(text: str | None) -> list[int] | None:
    from fume.errors import ConfigError

    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise ConfigError("--seeds needs at least one seed, e.g. --seeds 0")
    return seeds


@app.command("experiments")
def experiments_command(
    arguments: list[str] = typer.Argument(
        ..., help="Grids, by shipped name (baselines, ablations, leakage) or file, and optional dotted overrides for every run (training.num_epochs=3)",
        show_default=False,
    ),
    out: Path = typer.Option(Path("outputs/experiments"), "--out", "-o", help="Experiments folder: datasets/, runs/, results.csv"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: the preset's, else each grid's)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="quick (2-core CPU, < 1 h) or full (the seed's recipe, GPU); shipped in fume/configs/experiments/presets.yaml"),
    data: Optional[Path] = typer.Option(None, "--data", help="Train on this dataset (split and paired) instead of a generated synthetic one"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate every run and list them; train nothing"),
) -> None:
    """Train and evaluate every variant x seed of the grids on the same data, splits and budget.
    Finished runs are skipped when repeated; results go to OUT/results.csv. Then: fume report OUT."""
    from rich.console import Console
    from rich.table import Table

    from fume.errors import FumeError
    from fume.reporting.grid import config_hash
    from fume.workflows.experiments import plan, run_experiments

    check_out_folder(out)
    console = Console(stderr=True)
    grids, overrides = _split_arguments(arguments)
    if data is not None:
        overrides = [f"data.dataset_root={data.resolve()}", "data.synthetic=null", *overrides]
    seed_list = _parse_seeds(seeds)
    if dry_run:
        specs, _ = plan(grids, out, seed_list, preset, overrides)
        table = Table(title=f"{len(specs)} runs ({len({config_hash(s.config) for s in specs})} distinct configurations)")
        for column in ("grid", "variant", "seed", "model", "split", "epochs", "image size", "config"):
            table.add_column(column)
        for s in specs:
            c = s.config
            table.add_row(s.grid.name, s.variant.name, str(s.seed), c.model.name, s.variant.split, str(c.training.num_epochs),
                          f"{c.data.image_size[0]}x{c.data.image_size[1]}", config_hash(c))
        Console().print(table)
        return
    result = run_experiments(grids, out, seed_list, preset, overrides, console=console)
    console.print(
        f"[green]done[/] in {result.seconds / 60:.1f} min: {result.trained} trained, {result.skipped} skipped (finished before), "
        f"{len(result.failed)} failed\nresults: {result.results_csv}\nnext: fume report {result.out}"
    )
    if result.failed:
        raise FumeError(f"{len(result.failed)} run(s) failed: {', '.join(result.failed)}; their errors are in {result.results_csv} (column error). "
                        "Repeat the command to run them again (finished runs are skipped)")


@app.command("report")
def report_command(
    experiments_dir: Path = typer.Argument(..., help="Folder written by fume experiments (holds results.csv)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default: EXPERIMENTS_DIR/report)"),
    resamples: int = typer.Option(2000, "--resamples", min=100, help="Bootstrap resamples for the 95 % confidence intervals"),
    qualitative: int = typer.Option(3, "--qualitative", min=0, help="Test pairs per class in the qualitative grids"),
) -> None:
    """Tables (Markdown, CSV, LaTeX), paired bootstrap CIs against FUME, the leakage study, figures (PNG, PDF) and report.md."""
    from rich.console import Console

    from fume.reporting.report import build_report

    console = Console(stderr=True)
    with console.status("writing the report"):
        result = build_report(experiments_dir, out, resamples=resamples, qualitative_per_class=qualitative)
    for warning in result.warnings:
        log.warning(f"note: {warning}")
    console.print(f"[green]report[/]: {result.report_md}\n{len(result.tables)} tables, {len(result.figures)} figure files under {result.out}")
