"""`fume evaluate`: a checkpoint on one split, metrics at the frames' native resolution.

Writes into OUT:
  metrics.json          flat metric keys (fume.evaluation.metrics.METRIC_KEYS), null where a metric is undefined
  predictions.csv       one row per pair: paths, ph_value, class_id, co2_recording / ch4_recording (the frames'
                        original_sample_id), pred_class_id, one probability per class, true and predicted
                        plume area per gas (+ co2_pred_mask, ch4_pred_mask with --save-masks)
  per_ph.csv            per pH level and gas: pairs, frames, accuracy, true and predicted mean plume area
  recordings.csv        one decision per recording: mean class probability over its pairs, predicted class
  masks/                predicted masks, 8-bit PNG 0/1/2 at native resolution (--save-masks)
  confusion_matrix.png  qualitative.png  reliability.png / .pdf (calibration of the top probability)

With calibrate=True (`fume evaluate --calibrate`) a temperature is first fitted on the validation
split (fume.evaluation.calibration), stored in the checkpoint (its config's testing.temperature,
which `fume predict` and `fume export` then use) and applied here; metrics.json then also has
ece_uncalibrated and brier_uncalibrated (the same pairs at temperature 1).

Everything is written into a hidden staging folder inside OUT and moved into place only when all of
it (figures included) is written: a failed run (a full disk, an error while drawing) leaves none
of its files under their final names. OUT holds one run's results: the outputs of an earlier
evaluation there (EVALUATE_OUTPUTS) are replaced (evaluate_checkpoint's default) or refused with
overwrite=False (`fume evaluate` without --overwrite); other files in OUT are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fume.config import load_config, override_config, resolve_paths
from fume.contract import GASES, probability_columns
from fume.data.dataset import read_paired_table
from fume.data.layout import PAIRED_WHO_WHEN_COLUMNS, outside_root_allowed
from fume.errors import ConfigError, DataError
from fume.evaluation.analyses import RECORDING_COLUMNS, add_recordings
from fume.evaluation.engine import AREA_COLUMNS, PAIR_COLUMNS, evaluate_predictors
from fume.inference.batch import check_output_folder, remove_earlier_outputs
from fume.inference.engine import LoadedPair
from fume.inference.predictor import PairPrediction, Predictor
from fume.io import jsonable, staged_dir, write_csv, write_json, write_png
from fume.logs import get_logger
from fume.models.checkpoint import check_same_model, load_model_from_checkpoint

log = get_logger(__name__)

# What an evaluation writes into OUT, as glob patterns relative to OUT.
EVALUATE_OUTPUTS = ("metrics.json", "predictions.csv", "per_ph.csv", "recordings.csv", "masks/*.png", "confusion_matrix.png",
                    "qualitative.png", "reliability.png", "reliability.pdf")


@dataclass
class EvaluationResult:
    out_dir: Path
    metrics: dict[str, Any]
    predictions_csv: Path
    figures: list[Path]
    mask_dir: Path | None


def resolve_evaluation_config(checkpoint: str | Path, config_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """(model, config): the run's own config from the checkpoint, with `config_path` and/or dotted
    overrides applied; asking for another model than the checkpoint holds is a ConfigError."""
    model, trained = load_model_from_checkpoint(checkpoint)
    if config_path is not None:
        config = resolve_paths(load_config(config_path, overrides))
    else:
        config = resolve_paths(override_config(trained, overrides, f"config stored in {checkpoint}"))
    check_same_model(trained.model, config.model, checkpoint)
    return model, config


def default_output_dir(checkpoint: Path, split: str) -> Path:
    """RUN_DIR/eval-<split>-<checkpoint name> for a checkpoint inside RUN_DIR/checkpoints/."""
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return run_dir / f"eval-{split}-{checkpoint.stem}"


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str | None = None,
    out: str | Path | None = None,
    save_masks: bool | None = None,
    config_path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    device: str = "cpu",
    progress: bool = True,
    overwrite: bool = True,
    calibrate: bool = False,
) -> EvaluationResult:
    """Evaluate `checkpoint` on `split` (default testing.split) and write the files listed above.
    An earlier evaluation's outputs in OUT are replaced, or with overwrite=False refused (ConfigError)."""
    checkpoint = Path(checkpoint)
    model, config = resolve_evaluation_config(checkpoint, config_path, overrides)
    split = split or config.testing.split
    save_masks = config.testing.save_masks if save_masks is None else save_masks
    table = _paired_table(config, split)
    out_dir = Path(out) if out is not None else default_output_dir(checkpoint, split)
    check_output_folder(out_dir, EVALUATE_OUTPUTS, overwrite)
    predictor = Predictor.from_model(model, config, device=device, source=str(checkpoint))
    if calibrate:
        predictor.temperature = calibrate_checkpoint(checkpoint, predictor, config, device, progress)
    with staged_dir(out_dir) as staging:
        metrics, predictions, figures = _evaluate_into(staging, predictor, config, split, table, save_masks, progress, calibrate)
        remove_earlier_outputs(out_dir, EVALUATE_OUTPUTS)
    return EvaluationResult(
        out_dir=out_dir, metrics=metrics, predictions_csv=out_dir / predictions.name,
        figures=[out_dir / p.relative_to(staging) for p in figures], mask_dir=out_dir / "masks" if save_masks else None,
    )


def _paired_table(config, split: str) -> pd.DataFrame:
    """The split's paired table with the frames' recordings (co2_recording, ch4_recording) when the
    dataset's annotations name them (else a warning, and no per-recording results)."""
    table_path = config.data.paired_table(split)
    if not table_path.is_file():
        raise DataError(
            f"paired table for split {split!r} not found: {table_path}. Create it with `fume pair` "
            f"(data.paired_dir / data.dataset_root say where it is looked for)"
        )
    table, why_not = add_recordings(read_paired_table(table_path), config.data.dataset_root)
    if why_not:
        log.warning(f"{table_path}: {why_not}; recordings.csv and recording_balanced_accuracy are left out")
    return table


def calibrate_checkpoint(checkpoint: Path, predictor: Predictor, config, device: str = "cpu", progress: bool = False) -> float:
    """Fit a temperature on the validation split's pairs (at temperature 1), store it in the
    checkpoint's config (testing.temperature) and return it."""
    import torch

    from fume.evaluation.calibration import fit_temperature
    from fume.io import write_with
    from fume.models.checkpoint import read_checkpoint

    table = _paired_table(config, "val")
    names = probability_columns(config.data.labels.class_names)
    predictor.temperature = 1.0
    with outside_root_allowed(config.data.allow_outside_root), _progress(len(table), "calibrating on val", progress) as advance:
        records = evaluate_predictors({"model": predictor}, table, config.data.dataset_root, config.testing.batch_size,
                                      boundary=False, progress=advance)["model"].records
    if not records or names[0] not in records[0]:
        raise ConfigError(f"{checkpoint}: --calibrate needs a model that classifies (model {config.model.name} gives no class probabilities)")
    frame = pd.DataFrame(records)
    temperature = fit_temperature(frame[names].to_numpy(), frame["class_id"].to_numpy())
    ckpt = read_checkpoint(checkpoint)
    ckpt["hyper_parameters"]["config"].setdefault("testing", {})["temperature"] = temperature
    write_with(checkpoint, lambda tmp: torch.save(ckpt, tmp))
    log.info(f"temperature {temperature:.3f} fitted on {len(frame)} validation pairs, stored in {checkpoint}")
    return temperature


def _evaluate_into(out_dir: Path, predictor: Predictor, config, split: str, table: pd.DataFrame, save_masks: bool,
                   progress: bool, calibrated: bool = False) -> tuple[dict[str, Any], Path, list[Path]]:
    """Evaluate and write every output into `out_dir` (the staging folder): (metrics, predictions.csv, figures)."""
    from fume.evaluation.analyses import balanced_accuracy, per_ph_table, recording_decisions
    from fume.evaluation.calibration import apply_temperature, brier_score, expected_calibration_error

    mask_dir = out_dir / "masks" if save_masks else None
    class_names = list(config.data.labels.class_names)

    visuals = QualitativePicker(config.testing.qualitative_per_class)
    mask_paths: list[dict[str, str]] = []

    def on_pair(_name: str, pair: LoadedPair, prediction: PairPrediction) -> None:
        visuals.offer(pair, prediction)
        if mask_dir is not None:
            mask_paths.append(_save_masks(mask_dir, prediction))

    with outside_root_allowed(config.data.allow_outside_root), _progress(len(table), f"evaluating {split}", progress) as advance:
        result = evaluate_predictors({"model": predictor}, table, config.data.dataset_root, config.testing.batch_size, on_pair=on_pair, progress=advance)["model"]
    metrics = dict(result.metrics)
    records = result.records
    if mask_dir is not None:
        records = [{**r, **m} for r, m in zip(records, mask_paths)]
    carried = [c for c in [*PAIRED_WHO_WHEN_COLUMNS, *RECORDING_COLUMNS] if c in table.columns]  # when the table has them
    prob_cols = probability_columns(class_names)
    columns = PAIR_COLUMNS + carried + ["pred_class_id", *prob_cols, *AREA_COLUMNS] + (["co2_pred_mask", "ch4_pred_mask"] if save_masks else [])
    predictions = pd.DataFrame(records).reindex(columns=columns)
    predictions_csv = out_dir / "predictions.csv"
    write_csv(predictions_csv, predictions)

    metrics["temperature"] = predictor.temperature
    classified = predictions["pred_class_id"].notna().all() and len(predictions)
    if classified and calibrated:  # the same pairs at temperature 1: softmax(T log p) = p before scaling
        raw = apply_temperature(predictions[prob_cols].to_numpy(), 1.0 / predictor.temperature)
        metrics["ece_uncalibrated"] = expected_calibration_error(raw, predictions["class_id"].to_numpy())
        metrics["brier_uncalibrated"] = brier_score(raw, predictions["class_id"].to_numpy())
    write_csv(out_dir / "per_ph.csv", per_ph_table(predictions))
    if classified and all(c in predictions for c in RECORDING_COLUMNS):
        decisions = recording_decisions(predictions, class_names)
        write_csv(out_dir / "recordings.csv", decisions)
        metrics["recording_balanced_accuracy"] = balanced_accuracy(decisions["class_id"].to_numpy(), decisions["pred_class_id"].to_numpy())
    metrics = jsonable(metrics)
    write_json(out_dir / "metrics.json", metrics)

    figures = _write_figures(out_dir, metrics, visuals.rows, class_names, predictions if classified else None)
    return metrics, predictions_csv, figures


def _safe_name(sample_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", sample_id)


def _save_masks(mask_dir: Path, prediction: PairPrediction) -> dict[str, str]:
    """Predicted masks at native size as 8-bit PNG; the predictions.csv columns that point to them."""
    columns = {}
    for gas in GASES:
        mask = prediction.gases[gas].mask
        columns[f"{gas}_pred_mask"] = ""
        if mask is not None:
            name = f"{_safe_name(prediction.sample_id)}_{gas}.png"
            write_png(mask_dir / name, mask)
            columns[f"{gas}_pred_mask"] = f"masks/{name}"
    return columns


class QualitativePicker:
    """The first `per_class` pairs of each true class, kept for the qualitative figure."""

    def __init__(self, per_class: int) -> None:
        self.per_class = per_class
        self.by_class: dict[int, list[dict[str, Any]]] = {}

    def offer(self, pair: LoadedPair, prediction: PairPrediction) -> None:
        true_class = int(pair.pair.class_id)
        picked = self.by_class.setdefault(true_class, [])
        if len(picked) >= self.per_class:
            return
        row = {"sample_id": pair.pair.sample_id, "true_class": true_class, "pred_class": prediction.class_id}
        for gas in GASES:
            row[f"{gas}_frame"], row[f"{gas}_mask"] = prediction.gases[gas].display, pair.masks[gas]  # as the model saw it, 8-bit
            row[f"{gas}_pred"] = prediction.gases[gas].mask
        picked.append(row)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for c in sorted(self.by_class) for row in self.by_class[c]]


def _write_figures(out_dir: Path, metrics: dict[str, Any], rows: list[dict[str, Any]], class_names: list[str],
                   predictions: pd.DataFrame | None) -> list[Path]:
    from fume.evaluation.figures import plot_confusion_matrix, plot_qualitative_grid, plot_reliability

    written = []
    if metrics.get("confusion_matrix") is not None:
        written.append(plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png"))
    if predictions is not None:
        probs, y_true = predictions[probability_columns(class_names)].to_numpy(), predictions["class_id"].to_numpy()
        title = f"Reliability (temperature {metrics.get('temperature', 1.0):.2f})"
        written.append(plot_reliability(probs, y_true, out_dir / "reliability.png", title))
        plot_reliability(probs, y_true, out_dir / "reliability.pdf", title)  # for papers; `figures` lists the images
    if rows:
        written.append(plot_qualitative_grid(rows, class_names, out_dir / "qualitative.png"))
    return [Path(p) for p in written]


@contextmanager
def _progress(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
