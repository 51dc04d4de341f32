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
    folds: Optional[int] = typer.Option(None, "--folds", help="Grouped K-fold cross-validation: K runs per variant x seed, each holding out other recordings (leakage grids keep one split)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate every run and list them; train nothing"),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the plan as a JSON list, one object per run"),
    collect: bool = typer.Option(False, "--collect", help="Rebuild OUT/results.csv from the run folders; run nothing"),
    shard: Optional[str] = typer.Option(None, "--shard", help="k/n: run only shard k of n (every n-th distinct configuration from the k-th), to split a grid over n machines"),
    executor: str = typer.Option("local", "--executor", help="local (this process, one run after another) | submitit-local (a process per run) | slurm (one job array)"),
    max_parallel: int = typer.Option(1, "--max-parallel", help="submitit-local: runs at once"),
    slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", help="slurm: partition"),
    slurm_time: Optional[str] = typer.Option(None, "--slurm-time", help="slurm: time limit per run (minutes, HH:MM:SS or D-HH:MM:SS)"),
    gpus_per_run: int = typer.Option(1, "--gpus-per-run", help="slurm: GPUs per run"),
    cpus_per_run: Optional[int] = typer.Option(None, "--cpus-per-run", help="slurm: CPUs per run"),
    slurm_array_parallelism: Optional[int] = typer.Option(None, "--slurm-array-parallelism", help="slurm: runs of the array at once (default: all)"),
    slurm_option: Optional[list[str]] = typer.Option(None, "--slurm-option", help="slurm: any sbatch option as key=value (repeat), e.g. account=myproject"),
    no_wait: bool = typer.Option(False, "--no-wait", help="slurm: submit and return; later --collect builds results.csv"),
) -> None:
    """Train and evaluate every variant x seed of the grids on the same data, splits and budget.
    Finished runs are skipped when repeated; results go to OUT/results.csv. Then: fume report OUT."""
    from rich.console import Console
    from rich.table import Table

    from fume.errors import FumeError
    from fume.reporting.grid import config_hash
    from fume.workflows.executors import SlurmSettings, dry_run_lines, json_plan, parse_shard, run_grid, shard_specs
    from fume.workflows.experiments import plan

    check_out_folder(out)
    console = Console(stderr=True)
    grids, overrides = _split_arguments(arguments)
    if data is not None:
        overrides = [f"data.dataset_root={data.resolve()}", "data.synthetic=null", *overrides]
    seed_list = _parse_seeds(seeds)
    shard_k_n = parse_shard(shard)
    slurm = SlurmSettings(slurm_partition, slurm_time, gpus_per_run, cpus_per_run, slurm_array_parallelism, slurm_option or [])
    if dry_run:
        specs, _ = plan(grids, out, seed_list, preset, overrides, folds)
        specs = shard_specs(specs, shard_k_n)
        if as_json:
            print(json_plan(specs))
            return
        table = Table(title=f"{len(specs)} runs ({len({config_hash(s.config) for s in specs})} distinct configurations)")
        for column in ("grid", "variant", "seed", "fold", "model", "split", "epochs", "image size", "config"):
            table.add_column(column)
        for s in specs:
            c = s.config
            table.add_row(s.grid.name, s.variant.name, str(s.seed), "" if s.fold is None else str(s.fold), c.model.name, s.variant.split,
                          str(c.training.num_epochs),
                          f"{c.data.image_size[0]}x{c.data.image_size[1]}", config_hash(c))
        Console().print(table)
        for line in dry_run_lines(specs, out, executor, slurm):
            Console(soft_wrap=True).print(line, highlight=False, markup=False)
        return
    result = run_grid(grids, out, seed_list, preset, overrides, console=console, folds=folds, executor=executor, shard=shard_k_n,
                      max_parallel=max_parallel, slurm=slurm, wait=not no_wait, collect_only=collect)
    if collect or (executor == "slurm" and no_wait):
        what = f"submitted SLURM job array {result.job_ids[0].split('_')[0]}; when it ends: the same command with --collect\n" if result.job_ids and not collect else ""
        console.print(f"{what}results.csv rebuilt from the run folders: {result.skipped} finished, {len(result.failed)} not (yet): {result.results_csv}")
        return
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
    tune: Optional[Path] = typer.Option(None, "--tune", help="Also report a hyperparameter search: the --out folder of fume tune"),
) -> None:
    """Tables (Markdown, CSV, LaTeX), paired bootstrap CIs against FUME, the leakage study, figures (PNG, PDF) and report.md."""
    from rich.console import Console

    from fume.reporting.report import build_report

    console = Console(stderr=True)
    with console.status("writing the report"):
        result = build_report(experiments_dir, out, resamples=resamples, qualitative_per_class=qualitative, tune_dir=tune)
    for warning in result.warnings:
        log.warning(f"note: {warning}")
    console.print(f"[green]report[/]: {result.report_md}\n{len(result.tables)} tables, {len(result.figures)} figure files under {result.out}")
