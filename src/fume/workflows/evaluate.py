"""`fume evaluate`: a checkpoint on one split, metrics at the frames' native resolution.

Writes into OUT:
  metrics.json          flat metric keys (fume.evaluation.metrics.METRIC_KEYS), null where a metric is undefined
  predictions.csv       one row per pair: paths, class_id, pred_class_id, one probability per class
                        (+ co2_pred_mask, ch4_pred_mask with --save-masks)
  masks/                predicted masks, 8-bit PNG 0/1/2 at native resolution (--save-masks)
  confusion_matrix.png  qualitative.png

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
from fume.errors import DataError
from fume.evaluation.engine import PAIR_COLUMNS, evaluate_predictors
from fume.inference.batch import check_output_folder, remove_earlier_outputs
from fume.inference.engine import LoadedPair
from fume.inference.predictor import PairPrediction, Predictor
from fume.io import jsonable, staged_dir, write_csv, write_json, write_png
from fume.models.checkpoint import check_same_model, load_model_from_checkpoint

# What an evaluation writes into OUT, as glob patterns relative to OUT.
EVALUATE_OUTPUTS = ("metrics.json", "predictions.csv", "masks/*.png", "confusion_matrix.png", "qualitative.png")


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
) -> EvaluationResult:
    """Evaluate `checkpoint` on `split` (default testing.split) and write the files listed above.
    An earlier evaluation's outputs in OUT are replaced, or with overwrite=False refused (ConfigError)."""
    checkpoint = Path(checkpoint)
    model, config = resolve_evaluation_config(checkpoint, config_path, overrides)
    split = split or config.testing.split
    save_masks = config.testing.save_masks if save_masks is None else save_masks
    table_path = config.data.paired_table(split)
    if not table_path.is_file():
        raise DataError(
            f"paired table for split {split!r} not found: {table_path}. Create it with `fume pair` "
            f"(data.paired_dir / data.dataset_root say where it is looked for)"
        )
    table = read_paired_table(table_path)
    out_dir = Path(out) if out is not None else default_output_dir(checkpoint, split)
    check_output_folder(out_dir, EVALUATE_OUTPUTS, overwrite)
    with staged_dir(out_dir) as staging:
        metrics, predictions, figures = _evaluate_into(staging, model, config, checkpoint, split, table, save_masks, device, progress)
        remove_earlier_outputs(out_dir, EVALUATE_OUTPUTS)
    return EvaluationResult(
        out_dir=out_dir, metrics=metrics, predictions_csv=out_dir / predictions.name,
        figures=[out_dir / p.relative_to(staging) for p in figures], mask_dir=out_dir / "masks" if save_masks else None,
    )


def _evaluate_into(out_dir: Path, model, config, checkpoint: Path, split: str, table: pd.DataFrame, save_masks: bool, device: str,
                   progress: bool) -> tuple[dict[str, Any], Path, list[Path]]:
    """Evaluate and write every output into `out_dir` (the staging folder): (metrics, predictions.csv, figures)."""
    mask_dir = out_dir / "masks" if save_masks else None
    class_names = list(config.data.labels.class_names)
    predictor = Predictor.from_model(model, config, device=device, source=str(checkpoint))

    visuals = QualitativePicker(config.testing.qualitative_per_class)
    mask_paths: list[dict[str, str]] = []

    def on_pair(_name: str, pair: LoadedPair, prediction: PairPrediction) -> None:
        visuals.offer(pair, prediction)
        if mask_dir is not None:
            mask_paths.append(_save_masks(mask_dir, prediction))

    with outside_root_allowed(config.data.allow_outside_root), _progress(len(table), f"evaluating {split}", progress) as advance:
        result = evaluate_predictors({"model": predictor}, table, config.data.dataset_root, config.testing.batch_size, on_pair=on_pair, progress=advance)["model"]
    metrics = jsonable(result.metrics)
    write_json(out_dir / "metrics.json", metrics)

    records = result.records
    if mask_dir is not None:
        records = [{**r, **m} for r, m in zip(records, mask_paths)]
    who_when = [c for c in PAIRED_WHO_WHEN_COLUMNS if c in table.columns]  # carried when the table has them
    columns = PAIR_COLUMNS + who_when + ["pred_class_id", *probability_columns(class_names)] + (["co2_pred_mask", "ch4_pred_mask"] if save_masks else [])
    predictions_csv = out_dir / "predictions.csv"
    write_csv(predictions_csv, pd.DataFrame(records).reindex(columns=columns))

    figures = _write_figures(out_dir, metrics, visuals.rows, class_names)
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
            row[f"{gas}_frame"], row[f"{gas}_mask"] = pair.frames[gas], pair.masks[gas]
            row[f"{gas}_pred"] = prediction.gases[gas].mask
        picked.append(row)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for c in sorted(self.by_class) for row in self.by_class[c]]


def _write_figures(out_dir: Path, metrics: dict[str, Any], rows: list[dict[str, Any]], class_names: list[str]) -> list[Path]:
    from fume.evaluation.figures import plot_confusion_matrix, plot_qualitative_grid

    written = []
    if metrics.get("confusion_matrix") is not None:
        written.append(plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png"))
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
