"""Small Lightning callbacks: the end-of-validation metrics table, Ctrl-C / SIGTERM -> last.ckpt,
and checkpoints that survive a moved run folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from rich.console import Console
from rich.table import Table

from fume.logs import get_logger

log = get_logger(__name__)

# The headline metrics, in this order (per-gas details stay in the logs and metrics.json).
TABLE_ORDER = [
    "loss", "miou", "dice", "pixel_accuracy", "iou_background", "iou_tube", "iou_gas", "co2_miou",
    "ch4_miou", "hd95_gas", "asd_gas", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "cohens_kappa",
    "joint_score", "num_samples",
]


def metrics_table(metrics: dict[str, Any], title: str, keys: list[str] | None = None) -> Table:
    """A two-column rich table of the headline scalar metrics (TABLE_ORDER plus per-class F1)."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if keys is None:
        f1 = [k for k in scalars if k.startswith("f1_")]
        keys = TABLE_ORDER[: TABLE_ORDER.index("macro_f1") + 1] + f1 + TABLE_ORDER[TABLE_ORDER.index("macro_f1") + 1 :]
    for key in keys:
        if key in scalars:
            value = scalars[key]
            table.add_row(key, str(int(value)) if key == "num_samples" else f"{value:.4f}")
    return table


class MetricsTable(L.Callback):
    """Prints the validation metrics of each epoch as a table (rank zero only, not the sanity check)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = dict(getattr(pl_module, "last_val_metrics", {}))
        if metrics:
            self.console.print(metrics_table(metrics, f"validation, epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"))


class LossProgressBar(RichProgressBar):
    """Rich progress bar showing the live training loss (without Lightning's logger version)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class CheckpointOnInterrupt(L.Callback):
    """Ctrl-C or SIGTERM: save last.ckpt (weights, optimiser, scheduler, loop position) before
    Lightning exits, so `--resume` continues from where the run stopped.

    Ctrl-C arrives as KeyboardInterrupt (so does SIGTERM under the `fume` command, see fume.cli);
    elsewhere Lightning turns SIGTERM into SIGTERMException at the next batch. A signal during a
    checkpoint write waits until the file is complete (fume.io), so the interrupt lands here after
    the write, never inside it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return  # any other failure keeps the last good checkpoint untouched
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole state, to resume from
        if trainer.is_global_zero:
            log.warning(
                f"interrupted at epoch {trainer.current_epoch}, step {trainer.global_step}; saved {self.path}. "
                f"Continue with `fume train ... --resume`."
            )


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that keeps its state when the run folder was copied or moved
    (Lightning drops best_model_score when the checkpoint folder's path changed, and the next
    validation then replaces best.ckpt with a worse model; a copied folder's `last` callback even
    deletes the original's last.ckpt): paths in the restored state are mapped into the current
    folder. Also remembers the epoch of the best checkpoint (`best_epoch`, saved with the state),
    so RUN_DIR/metrics.json describes best.ckpt."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.best_epoch: int | None = None

    @property
    def state_key(self) -> str:
        # Lightning's own key (its class name): checkpoints written before this class restore too.
        key = super().state_key
        return "ModelCheckpoint" + key[len(type(self).__qualname__):]

    def _track_best(self, trainer: L.Trainer, hook: Any) -> None:
        before = self.best_model_score
        hook()
        if self.monitor and self.best_model_score is not None and self.best_model_score is not before:
            self.best_epoch = trainer.current_epoch

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._track_best(trainer, lambda: super(RunCheckpoint, self).on_validation_end(trainer, pl_module))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._track_best(trainer, lambda: super(RunCheckpoint, self).on_train_epoch_end(trainer, pl_module))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:

            def moved(path: Any) -> Any:
                return os.path.join(self.dirpath, os.path.basename(path)) if path and os.path.dirname(str(path)) == old else path

            state_dict = {
                **state_dict, "dirpath": self.dirpath,
                **{k: moved(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path", "last_model_path") if k in state_dict},
                "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()},
            }
        super().load_state_dict(state_dict)
        self.best_epoch = state_dict.get("best_epoch", self.best_epoch)


class EpochLearningRateMonitor(LearningRateMonitor):
    """LearningRateMonitor (logging_interval="epoch") whose rows carry the epoch, like every other
    row of metrics.csv: the logs of an interrupted and resumed run are merged by epoch
    (fume.workflows.train), and Lightning's own rows have only the step."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval == "step":
            return
        stats = self._extract_stats(trainer, "epoch" if self.logging_interval is None else "any")
        if stats:
            for logger in trainer.loggers:
                logger.log_metrics({**stats, "epoch": trainer.current_epoch}, step=trainer.fit_loop.epoch_loop._batches_that_stepped)
