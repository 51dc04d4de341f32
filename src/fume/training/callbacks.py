"""Small Lightning callbacks: the end-of-validation metrics table and Ctrl-C / SIGTERM -> last.ckpt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
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
