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

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from fume.config import FumeConfig, dump_config, save_config
from fume.errors import DataError, FumeError
from fume.io import write_csv, write_json
from fume.locks import folder_lock
from fume.logs import get_logger
from fume.models.checkpoint import read_checkpoint
from fume.training.trainer import ValidationHistory, build_trainer, effective_monitor, model_outputs, quiet_lightning

log = get_logger(__name__)


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
    best_epoch: int | None = None  # the epoch best.ckpt was saved at


def default_run_dir(config: FumeConfig) -> Path:
    return Path(config.experiment.output_dir) / config.experiment.name


def validate_data(config: FumeConfig) -> None:
    """Fail before the first step, with the validation report, when the data are broken."""
    from rich.progress import Progress

    from fume.data.validate import validate_dataset

    with Progress(transient=True) as bar:
        task = bar.add_task("checking the dataset", total=None)
        report = validate_dataset(
            config.data.dataset_root, label_config=config.data.labels, max_image_pixels=config.data.max_image_pixels,
            allow_outside_root=config.data.allow_outside_root, progress=lambda done, total: bar.update(task, completed=done, total=total),
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
    # Hidden files are a killed writer's temporaries (fume.io), not checkpoints.
    existing = sorted(p.name for p in ckpt_dir.glob("*.ckpt") if not p.name.startswith(".")) if ckpt_dir.is_dir() else []
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


EARLIER_LOG = "metrics.earlier.csv"


def _read_log(path: Path) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(path, on_bad_lines="skip")  # a killed writer may leave half a row
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=["epoch", "step"])


def _merge_logs(old: Any, new: Any) -> Any:
    """The rows of `old` before the first epoch of `new`, and those of that epoch before its first
    step (a resume in the middle of an epoch continues it: its learning-rate row and first batches
    are in `old` only; rows without an epoch, as the learning-rate rows of earlier FUME versions,
    also go by the step), then `new`."""
    import pandas as pd

    if not len(new):
        return old
    first_epoch, first_step = new["epoch"].min(), new["step"].min()
    epoch = old["epoch"] if "epoch" in old else pd.Series(float("nan"), index=old.index)
    keep = (epoch < first_epoch) | (~(epoch > first_epoch) & (old["step"] < first_step))
    merged = pd.concat([old[keep], new], ignore_index=True) if keep.any() else new
    for column in ("epoch", "step"):
        merged[column] = merged[column].astype("Int64")
    return merged


def _set_aside_csv_log(run_dir: Path) -> Path | None:
    """Lightning's CSVLogger starts metrics.csv afresh: keep the earlier segments of the run in
    csv/metrics.earlier.csv, for merging after the resumed segment (_merge_csv_logs). A run killed
    before that merge leaves both files: they are folded together here, so every earlier segment
    stays (as do the metrics.before-resume-*.csv of earlier FUME versions)."""
    folder = run_dir / "csv"
    earlier, current = folder / EARLIER_LOG, folder / "metrics.csv"
    segments = [*sorted(folder.glob("metrics.before-resume-*.csv")), earlier, current]
    segments = [p for p in segments if p.is_file()]
    if not segments:
        return None
    if segments != [earlier]:
        table = _read_log(segments[0])
        for segment in segments[1:]:
            table = _merge_logs(table, _read_log(segment))
        write_csv(earlier, table)
        for segment in segments:
            if segment != earlier:
                segment.unlink()
    return earlier


def _merge_csv_logs(earlier: Path, current: Path) -> None:
    """One metrics.csv: the earlier rows of the epochs before the resumed one, then the new rows.
    (A kill between the write and the unlink leaves both; the next resume folds them again.)"""
    if current.is_file():
        write_csv(current, _merge_logs(_read_log(earlier), _read_log(current)))
        earlier.unlink()
    else:
        earlier.replace(current)


def _best_metrics(history: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    if not history:
        return {}
    sign = -1.0 if monitor == "loss" else 1.0

    def score(m: dict[str, Any]) -> float:
        value = m.get(monitor)
        return sign * value if isinstance(value, (int, float)) and math.isfinite(value) else float("-inf")

    return max(history, key=score)


def train(config: FumeConfig, run_dir: str | Path | None = None, resume: bool = False, callbacks: list[Any] | None = None) -> TrainResult:
    """Train the configured model (see _train), holding RUN_DIR's lock (fume.locks) throughout: a
    second run into the same folder stops at once with a FumeError naming this one. `callbacks`:
    more Lightning callbacks (fume tune's pruning)."""
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    with folder_lock(run_dir):
        return _train(config, run_dir, resume, callbacks)


def _train(config: FumeConfig, run_dir: Path, resume: bool, callbacks: list[Any] | None = None) -> TrainResult:
    """Train the configured model; returns where everything went. Raises FumeError subclasses for
    bad data, a bad config, or a non-finite loss (naming the step). Messages go to the
    "fume.*" loggers (fume.logs). Ctrl-C saves checkpoints/last.ckpt, logs how to continue and
    raises SystemExit(1) (Lightning's way out of an interrupted fit)."""
    from fume.training.datamodule import FumeDataModule
    from fume.training.module import FumeTask

    quiet_lightning()
    start = time.perf_counter()
    resume = resume or config.resume.enabled
    ckpt_path = prepare_run_dir(config, run_dir, resume)
    resumed = None
    if ckpt_path is not None:
        # Read (safely, fume.models.checkpoint) before anything in the run folder changes: a
        # broken or malicious file stops here with one line, the folder as it was.
        resumed = read_checkpoint(ckpt_path)
        log.info(f"resuming from {ckpt_path}")
    L.seed_everything(config.experiment.seed, workers=True, verbose=False)

    if config.data.validate_before_training:
        validate_data(config)
    datamodule = FumeDataModule(config)
    datamodule.setup("fit")  # fail on a missing table before any process group starts

    outputs = model_outputs(config)
    monitor = effective_monitor(config.training.checkpoint.monitor, outputs)
    stop_monitor = effective_monitor(config.training.early_stopping.monitor, outputs)
    run_dir.mkdir(parents=True, exist_ok=True)
    _save_run_config(config, run_dir)

    history = ValidationHistory()
    trainer = build_trainer(config, run_dir, monitor, stop_monitor, extra_callbacks=[history, *(callbacks or [])],
                            preloaded=(ckpt_path, resumed) if resumed is not None else None)
    task = FumeTask(config)
    earlier_log = _set_aside_csv_log(run_dir) if ckpt_path is not None and trainer.is_global_zero else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"(Checkpoint|Experiment logs) directory .* exists and is not empty")
            trainer.fit(task, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    finally:
        # Also after Ctrl-C or a failure: metrics.csv holds every epoch so far.
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
        best_epoch=getattr(best_cb, "best_epoch", None),
    )
    if trainer.is_global_zero:
        _write_run_summary(result, history.epochs, resumed=ckpt_path is not None)
    return result


def _write_run_summary(result: TrainResult, epochs: list[dict[str, Any]], resumed: bool) -> None:
    """RUN_DIR/metrics.json (validation metrics of the best epoch, the per-epoch history) and
    training_curves.png from the CSV log."""
    path = result.run_dir / "metrics.json"
    if resumed and path.is_file():
        # Keep the epochs validated before the interruption.
        earlier = json.loads(path.read_text(encoding="utf-8")).get("history", [])
        first = epochs[0]["epoch"] if epochs else float("inf")
        epochs = [e for e in earlier if e.get("epoch", -1) < first] + epochs
    # The metrics of the epoch best.ckpt holds (a checkpoint written before FUME kept that epoch:
    # the best of the history).
    best = next((e for e in epochs if e.get("epoch") == result.best_epoch), None) if result.best_epoch is not None else None
    if best is None:
        best = _best_metrics(epochs, result.monitor)
        result.best_epoch = best.get("epoch")
    result.metrics = best
    summary = {
        "monitor": f"val_{result.monitor}", "best_score": result.best_score, "best_epoch": result.best_epoch,
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
