"""`fume train`, `fume evaluate`, `fume quickstart` (registered on fume.cli.app).
Heavy imports (torch, lightning) happen inside the commands so `fume --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fume.cli import app, check_out_folder

CONFIG_HELP = "YAML config file, or the name of a shipped one: fume_fastscnn (the seed's recipe) or quickstart"
OVERRIDES_HELP = "Dotted overrides after the options, values parsed as YAML: training.batch_size=4 data.image_size=[320,256]"


@app.command("train")
def train_command(
    config: Path = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="RUN_DIR (default: experiment.output_dir/experiment.name)"),
    resume: bool = typer.Option(False, "--resume", help="Continue RUN_DIR from checkpoints/last.ckpt (optimiser, scheduler, epoch)"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Train a model (FUME by default) with the seed's recipe; same command runs DDP via trainer.devices / num_nodes / strategy."""
    from rich.console import Console

    from fume.config import config_file, load_config, resolve_paths
    from fume.workflows.train import train

    console = Console(stderr=True)
    check_out_folder(out)
    cfg = resolve_paths(load_config(config_file(config), overrides or []))
    result = train(cfg, run_dir=out, resume=resume)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        score = f"{result.best_score:.4f}" if result.best_score is not None else "n/a"
        console.print(
            f"[green]done[/] in {result.seconds:.0f} s, {result.epochs_run} epochs"
            f"{' (early stop)' if result.stopped_early else ''}; best val_{result.monitor} = {score}\n"
            f"run directory: {result.run_dir}\nbest checkpoint: {result.best_checkpoint}\n"
            f"next: fume evaluate --checkpoint {result.best_checkpoint}"
        )


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-k", help="A .ckpt written by fume train"),
    split: Optional[str] = typer.Option(None, "--split", help="train / val / test (default: testing.split, test)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: RUN_DIR/eval-<split>-<checkpoint>)"),
    save_masks: Optional[bool] = typer.Option(None, "--save-masks/--no-save-masks", help="Write predicted masks (PNG, native size) under OUT/masks/"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file or shipped name to use instead of the run's own (must describe the same model)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier evaluation in OUT (refused without it)"),
    calibrate: bool = typer.Option(False, "--calibrate", help="Fit a temperature on the validation split first, store it in the checkpoint and apply it"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Metrics at native resolution, predictions.csv, per-pH and per-recording results, optional masks,
    confusion matrix, reliability diagram and a qualitative grid.

    OUT holds one evaluation: if it already holds an earlier one's outputs, the command stops
    unless --overwrite, which replaces them (other files in OUT are kept). Nothing is moved into
    OUT until every output is written, so a failed run (a full disk) leaves no partial outputs."""
    from rich.console import Console

    from fume.config import config_file
    from fume.training.callbacks import metrics_table
    from fume.workflows.evaluate import evaluate_checkpoint

    check_out_folder(out)
    config_path = config_file(config) if config is not None else None
    result = evaluate_checkpoint(checkpoint, split=split, out=out, save_masks=save_masks, config_path=config_path, overrides=overrides or [],
                                 overwrite=overwrite, calibrate=calibrate)
    console = Console()
    console.print(metrics_table(result.metrics, f"{checkpoint.name} on {split or 'test'}"))
    console.print(f"written to {result.out_dir}: metrics.json, predictions.csv" + "".join(f", {p.name}" for p in result.figures))


@app.command("quickstart")
def quickstart_command(
    out: Path = typer.Option(Path("outputs/quickstart"), "--out", "-o", help="Where the dataset, the run and the figures go"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file or shipped name (default: quickstart, shipped with FUME)"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """The main job: synthetic dataset (if absent) -> grouped split -> pairs -> train FUME -> evaluate on test."""
    from fume.workflows.quickstart import quickstart

    check_out_folder(out)
    quickstart(out, config_path=config, overrides=overrides or [])
