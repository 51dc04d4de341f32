"""`fume publish` (a run as a shareable model folder) and `fume tune` (Optuna search), registered on
fume.cli.app. Heavy imports happen inside the commands so `fume --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fume.cli import app, check_out_folder
from fume.errors import ConfigError


@app.command("publish")
def publish_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by fume train or fume experiments (OUT/runs/<grid>/<variant>/seed<k>)"),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write: model.safetensors, config.yaml, model.onnx, README.md"),
    int8: bool = typer.Option(False, "--int8", help="Also write model.int8.onnx (static quantization, calibrated on --calibration)"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="Paired CSV to calibrate int8 on (default: the run's train split)"),
    license: str = typer.Option("mit", "--license", help="License identifier for the model card"),
    data_kind: Optional[str] = typer.Option(None, "--data", help="synthetic | recorded: what the card says the data were (default: synthetic when the config generated them)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset id for the card's front matter"),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in the card (default fume-<model>-<experiment>)"),
) -> None:
    """Weights (safetensors), config, ONNX (fp32, int8 with --int8) and a Hugging Face model card with the test metrics.
    Upload with `huggingface-cli upload USER/NAME OUT` (needs network; not done here)."""
    from rich.console import Console

    from fume.workflows.publish import publish_run

    if data_kind not in (None, "synthetic", "recorded"):
        raise ConfigError(f"--data {data_kind!r}: choose synthetic or recorded")
    check_out_folder(out)
    result = publish_run(run_dir, out, int8=int8, calibration=calibration, license=license, data_kind=data_kind, dataset=dataset, model_name=name)
    console = Console(soft_wrap=True)
    shown = ", ".join(f"{k} {100 * v:.1f} %" for k, v in result.metrics.items() if k in ("miou", "balanced_accuracy") and isinstance(v, float))
    console.print(f"published {result.checkpoint} to {result.out}: {', '.join(p.name for p in result.files)}")
    console.print(f"test: {shown or 'no scores'}\nnext: fume predict --model {result.out} ... ; huggingface-cli upload USER/NAME {result.out}")


@app.command("tune")
def tune_command(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config file or shipped name (the base of every trial)"),
    space: str = typer.Option(..., "--space", help="Search space YAML (dotted keys with ranges / choices), or a shipped one by name: fume"),
    trials: int = typer.Option(..., "--trials", help="Trials this call runs (a resumed study adds them to its earlier ones)"),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL, e.g. sqlite:///tune.db (default: in memory, not resumable)"),
    study: Optional[str] = typer.Option(None, "--study", help="Study name in the storage (default fume)"),
    out: Path = typer.Option(Path("outputs/tune"), "--out", "-o", help="Folder for trials/, best.yaml, trials.csv, history.png"),
    seed: int = typer.Option(0, "--seed", help="TPE sampler seed (give each machine joining one study its own)"),
    overrides: Optional[list[str]] = typer.Argument(None, help="Dotted overrides for every trial, as in fume train", show_default=False),
) -> None:
    """Hyperparameter search with Optuna (TPE, median pruning on the monitored validation score); writes best.yaml and trials.csv."""
    from rich.console import Console

    from fume.config import config_file, load_config
    from fume.workflows.tune import load_space, tune

    check_out_folder(out)
    result = tune(load_config(config_file(config), overrides or []), load_space(space), trials, out, storage=storage, study_name=study, seed=seed)
    console = Console(soft_wrap=True)
    console.print(f"study {result.study_name!r}: {result.trials_run} trials run now, {result.trials_total} in all; trials: {result.trials_csv}")
    if result.best_yaml is not None:
        values = ", ".join(f"{k}={v}" for k, v in result.best_params.items())
        console.print(f"best value {result.best_value:.4f} with {values}\nbest config: {result.best_yaml}\nnext: fume train -c {result.best_yaml}")
