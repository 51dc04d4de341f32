"""The Lightning Trainer of a FUME run: precision, devices, loggers, checkpoints, early stopping
and the callbacks that print progress and metrics."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fume.config import FumeConfig
from fume.errors import ConfigError
from fume.logs import get_logger

log = get_logger(__name__)

CLS_METRICS = {"balanced_accuracy", "macro_f1", "accuracy"}
SEG_METRICS = {"miou"}


# Lightning's interrupt note is followed by FUME's own line (CheckpointOnInterrupt).
_NOISE = ("💡 Tip", "was configured so 100%", "Loading `train_dataloader` to estimate", "Detected KeyboardInterrupt")


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


def model_outputs(config: FumeConfig) -> set[str]:
    """Which outputs (cls_logits, co2/ch4_seg_logits) the configured model produces, as the model
    declares them (no second model is built or run)."""
    from fume.models.registry import output_names

    try:
        return set(output_names(config.model.name, **config.model.model_kwargs()))
    except ConfigError as err:
        raise ConfigError(f"model section of the config: {err}") from None


def effective_monitor(requested: str, outputs: set[str]) -> str:
    """A segmentation-only model has no balanced accuracy to watch (and the reverse): fall back, loudly."""
    has_cls = "cls_logits" in outputs
    has_seg = any(k.endswith("_seg_logits") for k in outputs)
    if requested in CLS_METRICS | {"joint_score"} and not has_cls:
        log.warning(f"the model does not classify; monitoring val_miou instead of val_{requested}")
        return "miou"
    if requested in SEG_METRICS | {"joint_score"} and not has_seg:
        log.warning(f"the model does not segment; monitoring val_balanced_accuracy instead of val_{requested}")
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
    config: FumeConfig, run_dir: Path, monitor: str, stop_monitor: str | None = None, extra_callbacks: list[Any] | None = None,
    preloaded: tuple[Path, dict[str, Any]] | None = None,
) -> L.Trainer:
    """`monitor` decides best.ckpt, `stop_monitor` early stopping (default: the same metric).
    `preloaded`: (path, checkpoint) the caller already read safely, for trainer.fit(ckpt_path=path);
    any other checkpoint Lightning reads goes through the same safe reader (AtomicCheckpointIO)."""
    from lightning.pytorch.callbacks import EarlyStopping

    from fume.training.callbacks import CheckpointOnInterrupt, EpochLearningRateMonitor, LossProgressBar, MetricsTable
    from fume.training.callbacks import RunCheckpoint as ModelCheckpoint  # survives a moved run folder
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
        callbacks.append(EpochLearningRateMonitor(logging_interval="epoch"))
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
        plugins=[AtomicCheckpointIO(preloaded)],
    )


class ValidationHistory(L.Callback):
    """Per-epoch validation metrics, for RUN_DIR/metrics.json. Saved in every checkpoint (plain
    numbers and lists), so a resumed run, however often interrupted, keeps the earlier epochs."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            epoch = trainer.current_epoch
            self.epochs = [e for e in self.epochs if e.get("epoch", -1) < epoch]  # an epoch validated again replaces its entry
            self.epochs.append({"epoch": epoch, **getattr(pl_module, "last_val_metrics", {})})

    def state_dict(self) -> dict[str, Any]:
        from fume.io import jsonable

        return {"epochs": jsonable(self.epochs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = [dict(e) for e in state_dict.get("epochs", [])]


