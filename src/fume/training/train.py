"""`fume train`: configuration -> Lightning Trainer (precision, devices, loggers, checkpoints,
early stopping) -> RUN_DIR with checkpoints/, logs, config.yaml and metrics.json.

RUN_DIR/
  config.yaml              the resolved configuration of the run
  checkpoints/best.ckpt    best validation score (training.checkpoint.monitor)
  checkpoints/last.ckpt    end of the latest epoch (or the moment of Ctrl-C)
  checkpoints/epoch-NNN.ckpt  every training.checkpoint.every_n_epochs epochs
  tensorboard/  csv/metrics.csv   logs
  metrics.json             validation metrics of the best epoch
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import warnings
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console

from fume.errors import ConfigError, DataError, FumeError
from fume.training.config import FumeConfig, dump_config, save_config

CLS_METRICS = {"balanced_accuracy", "macro_f1", "accuracy"}
SEG_METRICS = {"miou"}


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    monitor: str
    best_score: float | None
    epochs_run: int
    stopped_early: bool
    metrics: dict[str, Any]
    seconds: float


_NOISE = ("💡 Tip", "was configured so 100%", "Loading `train_dataloader` to estimate")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        return not any(n in message for n in _NOISE)


def quiet_lightning() -> None:
    """Drop Lightning's advertising and routine notes from the console; warnings that matter stay."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def choose_precision(use_amp: bool, accelerator: str) -> str:
    """Mixed precision only on CUDA GPUs: bf16 where supported (no loss scaling needed), else fp16."""
    if not use_amp or accelerator not in ("auto", "gpu", "cuda") or not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def default_run_dir(config: FumeConfig) -> Path:
    return Path(config.experiment.output_dir) / config.experiment.name


def model_outputs(config: FumeConfig) -> set[str]:
    """Which outputs (cls_logits, co2/ch4_seg_logits) the configured model produces."""
    from fume.training.checkpoint import build_model

    model = build_model(config.model).eval()
    with torch.no_grad():
        x = torch.zeros(2, 1, 64, 64)
        out = model(x, x, torch.ones(2, 2))
    return set(out)


def effective_monitor(requested: str, outputs: set[str], console: Console) -> str:
    """A segmentation-only model has no balanced accuracy to watch (and the reverse): fall back, loudly."""
    has_cls = "cls_logits" in outputs
    has_seg = any(k.endswith("_seg_logits") for k in outputs)
    if requested in CLS_METRICS | {"joint_score"} and not has_cls:
        console.print(f"[yellow]note: the model does not classify; monitoring val_miou instead of val_{requested}[/]")
        return "miou"
    if requested in SEG_METRICS | {"joint_score"} and not has_seg:
        console.print(f"[yellow]note: the model does not segment; monitoring val_balanced_accuracy instead of val_{requested}[/]")
        return "balanced_accuracy"
    return requested


def _require(package: str, key: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"{key} is true but the {package} package is not installed; install it with `pip install fume[{package}]`")


def build_loggers(config: FumeConfig, run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    log = config.logging
    loggers: list[Any] = []
    if log.tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard", default_hp_metric=False))
    if log.csv:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="", version="csv"))
    if log.wandb.enabled:
        _require("wandb", "logging.wandb.enabled")
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(
            WandbLogger(
                project=log.wandb.project, entity=log.wandb.entity, name=config.experiment.name,
                save_dir=str(run_dir), offline=log.wandb.offline, tags=config.experiment.tags, config=config.to_dict(),
            )
        )
    if log.mlflow.enabled:
        _require("mlflow", "logging.mlflow.enabled")
        from lightning.pytorch.loggers import MLFlowLogger

        uri = log.mlflow.tracking_uri or (run_dir / "mlruns").resolve().as_uri()
        loggers.append(MLFlowLogger(experiment_name=log.mlflow.experiment_name, run_name=config.experiment.name, tracking_uri=uri))
    return loggers


def build_trainer(
    config: FumeConfig, run_dir: Path, monitor: str, stop_monitor: str | None = None, extra_callbacks: list[Any] | None = None
) -> L.Trainer:
    """`monitor` decides best.ckpt, `stop_monitor` early stopping (default: the same metric)."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from fume.training.callbacks import CheckpointOnInterrupt, LossProgressBar, MetricsTable
    from fume.training.checkpoint import AtomicCheckpointIO

    t, tr = config.training, config.trainer
    ckpt_dir = run_dir / "checkpoints"
    mode = "min" if monitor == "loss" else "max"
    stop_monitor = stop_monitor or monitor
    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=ckpt_dir, filename="best", monitor=f"val_{monitor}", mode=mode, save_top_k=1,
            auto_insert_metric_name=False, enable_version_counter=False,
        ),
        CheckpointOnInterrupt(ckpt_dir / "last.ckpt"),
    ]
    if t.checkpoint.save_last:
        # Lightning's own save_last only follows saves of best.ckpt; this one writes every epoch.
        callbacks.append(
            ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                            auto_insert_metric_name=False, enable_version_counter=False)
        )
    if t.checkpoint.every_n_epochs > 0:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir, filename="epoch-{epoch:03d}", every_n_epochs=t.checkpoint.every_n_epochs,
                save_top_k=-1, auto_insert_metric_name=False, enable_version_counter=False,
            )
        )
    if t.early_stopping.enabled:
        callbacks.append(
            EarlyStopping(monitor=f"val_{stop_monitor}", mode="min" if stop_monitor == "loss" else "max", patience=t.early_stopping.patience, min_delta=t.early_stopping.min_delta, check_finite=True)
        )
    loggers = build_loggers(config, run_dir)
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if config.logging.progress_bar:
        callbacks.append(LossProgressBar(leave=True))
    if config.logging.metrics_table:
        callbacks.append(MetricsTable())
    callbacks.extend(extra_callbacks or [])
    return L.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=t.num_epochs,
        accelerator=tr.accelerator,
        devices=tr.devices,
        num_nodes=tr.num_nodes,
        strategy=tr.strategy,
        precision=choose_precision(t.use_amp, tr.accelerator),
        gradient_clip_val=t.grad_clip,
        accumulate_grad_batches=t.accumulate_grad_batches,
        check_val_every_n_epoch=config.validation.every_n_epochs,
        num_sanity_val_steps=config.validation.sanity_steps,
        limit_train_batches=tr.limit_train_batches if tr.limit_train_batches != 1.0 else None,
        limit_val_batches=tr.limit_val_batches if tr.limit_val_batches != 1.0 else None,
        deterministic=tr.deterministic,
        logger=loggers or False,
        log_every_n_steps=config.logging.log_every_n_steps,
        callbacks=callbacks,
        enable_progress_bar=config.logging.progress_bar,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
    )


def validate_data(config: FumeConfig) -> None:
    """Fail before the first step, with the validation report, when the data are broken."""
    from rich.progress import Progress

    from fume.data.validate import validate_dataset

    with Progress(transient=True) as bar:
        task = bar.add_task("checking the dataset", total=None)
        report = validate_dataset(
            config.data.dataset_root, label_config=config.data.labels, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    if not report.ok:
        raise DataError(f"the dataset at {config.data.dataset_root} failed validation:\n{report.render()}")


def prepare_run_dir(config: FumeConfig, run_dir: Path, resume: bool) -> Path | None:
    """Check the run directory and return the checkpoint to resume from (None for a fresh run).
    A fresh run never writes into a directory that already holds checkpoints."""
    ckpt_dir = run_dir / "checkpoints"
    if resume:
        ckpt = Path(config.resume.checkpoint) if config.resume.checkpoint else ckpt_dir / "last.ckpt"
        if not ckpt.is_file():
            raise FumeError(f"cannot resume: checkpoint {ckpt} not found (resume.checkpoint or RUN_DIR/checkpoints/last.ckpt)")
        return ckpt
    existing = sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    if existing and rank_zero_only.rank == 0:
        raise FumeError(
            f"run directory {run_dir} already holds checkpoints ({', '.join(existing[:3])}); continue that run with "
            f"--resume, or choose another --out or experiment.name"
        )
    return None


@rank_zero_only
def _save_run_config(config: FumeConfig, run_dir: Path) -> None:
    path = run_dir / "config.yaml"
    if path.exists() and path.read_text(encoding="utf-8") != dump_config(config):
        # A resumed run with changed settings: keep the earlier file beside the new one.
        path.replace(run_dir / f"config.{time.strftime('%Y%m%d-%H%M%S')}.yaml")
    save_config(config, path)


def _set_aside_csv_log(run_dir: Path) -> Path | None:
    """Lightning's CSVLogger deletes an existing metrics.csv; keep it for merging after a resume."""
    log = run_dir / "csv" / "metrics.csv"
    if not log.is_file():
        return None
    kept = log.with_name(f"metrics.before-resume-{time.strftime('%Y%m%d-%H%M%S')}.csv")
    log.replace(kept)
    return kept


def _merge_csv_logs(earlier: Path, current: Path) -> None:
    """One metrics.csv: the earlier rows of the epochs before the resumed one, then the new rows."""
    import pandas as pd

    old = pd.read_csv(earlier)
    new = pd.read_csv(current) if current.is_file() else old.iloc[:0]
    first = new["epoch"].min() if len(new) else float("inf")
    merged = pd.concat([old[old["epoch"] < first], new], ignore_index=True)
    tmp = current.with_name(".metrics.csv.tmp")
    merged.to_csv(tmp, index=False)
    tmp.replace(current)
    earlier.unlink()


def _best_metrics(history: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    if not history:
        return {}
    sign = -1.0 if monitor == "loss" else 1.0

    def score(m: dict[str, Any]) -> float:
        value = m.get(monitor)
        return sign * value if isinstance(value, (int, float)) and math.isfinite(value) else float("-inf")

    return max(history, key=score)


class _History(L.Callback):
    """Per-epoch validation metrics, for RUN_DIR/metrics.json."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.epochs.append({"epoch": trainer.current_epoch, **getattr(pl_module, "last_val_metrics", {})})


def train(config: FumeConfig, run_dir: str | Path | None = None, resume: bool = False, console: Console | None = None) -> TrainResult:
    """Train the configured model; returns where everything went. Raises FumeError subclasses for
    bad data, a bad config, or a non-finite loss (naming the step)."""
    from fume.training.datamodule import FumeDataModule
    from fume.training.module import FumeTask

    console = console or Console(stderr=True)
    quiet_lightning()
    start = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    resume = resume or config.resume.enabled
    ckpt_path = prepare_run_dir(config, run_dir, resume)
    L.seed_everything(config.experiment.seed, workers=True, verbose=False)

    if config.data.validate_before_training:
        validate_data(config)
    datamodule = FumeDataModule(config)
    datamodule.setup("fit")  # fail on a missing table before any process group starts

    outputs = model_outputs(config)
    monitor = effective_monitor(config.training.checkpoint.monitor, outputs, console)
    stop_monitor = effective_monitor(config.training.early_stopping.monitor, outputs, console)
    run_dir.mkdir(parents=True, exist_ok=True)
    _save_run_config(config, run_dir)

    history = _History()
    trainer = build_trainer(config, run_dir, monitor, stop_monitor, extra_callbacks=[history])
    task = FumeTask(config)
    earlier_log = _set_aside_csv_log(run_dir) if ckpt_path is not None and trainer.is_global_zero else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(Checkpoint|Experiment logs) directory .* exists and is not empty")
        trainer.fit(task, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    if earlier_log is not None:
        _merge_csv_logs(earlier_log, run_dir / "csv" / "metrics.csv")

    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    best_cb = next(cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor)
    early = next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)), None)
    result = TrainResult(
        run_dir=run_dir,
        best_checkpoint=Path(best_cb.best_model_path) if best_cb.best_model_path else None,
        last_checkpoint=(run_dir / "checkpoints" / "last.ckpt") if (run_dir / "checkpoints" / "last.ckpt").exists() else None,
        monitor=monitor,
        best_score=float(best_cb.best_model_score) if best_cb.best_model_score is not None else None,
        epochs_run=trainer.current_epoch,
        stopped_early=bool(early is not None and early.stopped_epoch > 0),
        metrics={},
        seconds=time.perf_counter() - start,
    )
    if trainer.is_global_zero:
        _write_run_summary(result, history.epochs, resumed=ckpt_path is not None)
    return result


def _write_run_summary(result: TrainResult, epochs: list[dict[str, Any]], resumed: bool) -> None:
    """RUN_DIR/metrics.json (validation metrics of the best epoch, the per-epoch history) and
    training_curves.png from the CSV log."""
    from fume.evaluation.evaluate import write_json

    path = result.run_dir / "metrics.json"
    if resumed and path.is_file():
        # Keep the epochs validated before the interruption.
        earlier = json.loads(path.read_text(encoding="utf-8")).get("history", [])
        first = epochs[0]["epoch"] if epochs else float("inf")
        epochs = [e for e in earlier if e.get("epoch", -1) < first] + epochs
    best = _best_metrics(epochs, result.monitor)
    result.metrics = best
    summary = {
        "monitor": f"val_{result.monitor}", "best_score": result.best_score, "best_epoch": best.get("epoch"),
        "epochs_run": result.epochs_run, "stopped_early": result.stopped_early, "seconds": round(result.seconds, 1),
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        **{k: v for k, v in best.items() if k != "epoch"},
        "history": epochs,
    }
    write_json(path, summary)
    csv_log = result.run_dir / "csv" / "metrics.csv"
    if csv_log.is_file():
        from fume.evaluation.figures import plot_training_curves

        plot_training_curves(csv_log, result.run_dir / "training_curves.png")
