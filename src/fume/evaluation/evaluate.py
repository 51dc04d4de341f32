"""`fume evaluate`: a checkpoint on one split, metrics at the frames' native resolution.

Writes into OUT:
  metrics.json          flat metric keys (see notes/common.md), null where a metric is undefined
  predictions.csv       one row per pair: paths, class_id, pred_class_id, one probability per class
                        (+ co2_pred_mask, ch4_pred_mask with --save-masks)
  masks/                predicted masks, 8-bit PNG 0/1/2 at native resolution (--save-masks)
  confusion_matrix.png  qualitative.png
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fume.data.labels import GASES
from fume.training.config import FumeConfig, atomic_write_text, load_config, override_config, resolve_paths

# Keys every metrics.json carries (null when the model lacks the task or the value is undefined).
METRIC_KEYS = [
    "miou", "dice", "pixel_accuracy", "iou_background", "iou_tube", "iou_gas", "co2_miou", "ch4_miou",
    "hd95_gas", "asd_gas", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "cohens_kappa",
    "f1_healthy", "f1_transitional", "f1_acidotic", "confusion_matrix", "joint_score", "num_samples",
]
PAIR_COLUMNS = ["sample_id", "co2_frame", "co2_mask", "ch4_frame", "ch4_mask", "class_id"]


@dataclass
class EvaluationResult:
    out_dir: Path
    metrics: dict[str, Any]
    predictions_csv: Path
    figures: list[Path]
    mask_dir: Path | None


def jsonable(value: Any) -> Any:
    """NaN/inf -> None and tensors/numpy -> Python, so json.dumps writes valid JSON."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.generic)):
        value = value.item() if getattr(value, "ndim", 0) == 0 else value.tolist()
        return jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    atomic_write_text(path, json.dumps(jsonable(data), indent=2) + "\n")
    return Path(path)


def probability_columns(class_names: list[str]) -> list[str]:
    from fume.evaluation.metrics import key_name

    return [f"prob_{key_name(name)}" for name in class_names]


def resolve_evaluation_config(checkpoint: str | Path, config_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """(model, config): the run's own config from the checkpoint, with `config_path` and/or dotted
    overrides applied; asking for another model than the checkpoint holds is a ConfigError."""
    from fume.training.checkpoint import check_same_model, load_model_from_checkpoint

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


def _safe_name(sample_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", sample_id)


def _save_mask(path: Path, labels: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    if not cv2.imwrite(str(tmp), labels.astype(np.uint8)):
        raise OSError(f"could not write {path}")
    tmp.replace(path)


def _pick_qualitative(rows: list[dict[str, Any]], class_ids: list[int], per_class: int) -> list[dict[str, Any]]:
    picked: list[dict[str, Any]] = []
    for c in sorted(set(class_ids)):
        picked.extend([r for r, cid in zip(rows, class_ids) if cid == c][:per_class])
    return picked


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str | None = None,
    out: str | Path | None = None,
    save_masks: bool | None = None,
    config_path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    device: str = "cpu",
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate `checkpoint` on `split` (default testing.split) and write the files listed above."""
    from torch.utils.data import DataLoader

    from fume.evaluation.metrics import ClassificationMetrics, SegmentationMetrics, joint_score
    from fume.training.datamodule import collate_pairs, make_dataset

    checkpoint = Path(checkpoint)
    model, config = resolve_evaluation_config(checkpoint, config_path, overrides)
    split = split or config.testing.split
    save_masks = config.testing.save_masks if save_masks is None else save_masks
    out_dir = Path(out) if out is not None else default_output_dir(checkpoint, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    mask_dir = out_dir / "masks" if save_masks else None

    class_names = list(config.data.labels.class_names)
    dataset = make_dataset(config, split, native_masks=True)
    loader = DataLoader(dataset, batch_size=config.testing.batch_size, shuffle=False, num_workers=config.data.num_workers, collate_fn=collate_pairs)
    seg_metrics = SegmentationMetrics(num_classes=3)
    cls_metrics = ClassificationMetrics(num_classes=len(class_names), class_names=class_names)
    model = model.to(device).eval()
    prob_cols = probability_columns(class_names)

    records: list[dict[str, Any]] = []
    visuals: list[dict[str, Any]] = []
    has_seg = has_cls = False
    table = dataset.table
    position = 0
    iterator = _progress(loader, f"evaluating {split}", progress)
    with torch.inference_mode():
        for batch in iterator:
            inputs = {k: batch[k].to(device) for k in ("co2_frame", "ch4_frame", "modality_mask")}
            outputs = model(inputs["co2_frame"], inputs["ch4_frame"], inputs["modality_mask"])
            probs = outputs["cls_logits"].float().softmax(1).cpu() if "cls_logits" in outputs else None
            if probs is not None:
                cls_metrics.update(probs, batch["class_label"])
                has_cls = True
            for i in range(batch["class_label"].shape[0]):
                row = table.iloc[position]
                position += 1
                record = {c: row[c] for c in PAIR_COLUMNS}
                record["class_id"] = int(row["class_id"])
                if probs is not None:
                    record["pred_class_id"] = int(probs[i].argmax())
                    record.update({c: float(p) for c, p in zip(prob_cols, probs[i])})
                visual = {"sample_id": record["sample_id"], "true_class": record["class_id"], "pred_class": record.get("pred_class_id")}
                for g, gas in enumerate(GASES):
                    key = f"{gas}_seg_logits"
                    present = bool(batch["modality_mask"][i, g] > 0.5)
                    visual[f"{gas}_frame"] = batch[f"{gas}_frame"][i, 0].numpy() if present else None
                    visual[f"{gas}_mask"] = batch[f"{gas}_mask"][i].numpy() if present else None
                    visual[f"{gas}_pred"] = None
                    if save_masks:
                        record[f"{gas}_pred_mask"] = ""
                    if key not in outputs or not present:
                        continue
                    has_seg = True
                    native = batch[f"{gas}_native_mask"][i]
                    logits = outputs[key][i : i + 1].float()
                    # Bilinear on the logits, then argmax: smoother boundaries than resizing labels.
                    native_pred = F.interpolate(logits, size=tuple(native.shape), mode="bilinear", align_corners=False).argmax(1)[0].cpu()
                    seg_metrics.update(native_pred[None], native[None], gas)
                    visual[f"{gas}_pred"] = logits.argmax(1)[0].cpu().numpy()
                    if mask_dir is not None:
                        name = f"{_safe_name(record['sample_id'])}_{gas}.png"
                        _save_mask(mask_dir / name, native_pred.numpy())
                        record[f"{gas}_pred_mask"] = f"masks/{name}"
                records.append(record)
                visuals.append(visual)

    metrics: dict[str, Any] = {key: None for key in METRIC_KEYS}
    if has_seg:
        metrics.update(seg_metrics.compute())
    if has_cls:
        metrics.update(cls_metrics.compute())
    if has_seg and has_cls:
        metrics["joint_score"] = joint_score(metrics["miou"], metrics["balanced_accuracy"])
    metrics["num_samples"] = len(records)
    metrics = jsonable(metrics)
    write_json(out_dir / "metrics.json", metrics)

    columns = PAIR_COLUMNS + ["pred_class_id", *prob_cols] + (["co2_pred_mask", "ch4_pred_mask"] if save_masks else [])
    predictions = pd.DataFrame(records).reindex(columns=columns)
    predictions_csv = out_dir / "predictions.csv"
    tmp = out_dir / ".predictions.csv.tmp"
    predictions.to_csv(tmp, index=False)
    tmp.replace(predictions_csv)

    figures = _write_figures(out_dir, metrics, visuals, class_names, config.testing.qualitative_per_class, has_cls)
    return EvaluationResult(out_dir=out_dir, metrics=metrics, predictions_csv=predictions_csv, figures=figures, mask_dir=mask_dir)


def _write_figures(out_dir: Path, metrics: dict[str, Any], visuals: list[dict[str, Any]], class_names: list[str], per_class: int, has_cls: bool) -> list[Path]:
    from fume.evaluation.figures import plot_confusion_matrix, plot_qualitative_grid

    written = []
    if has_cls and metrics.get("confusion_matrix") is not None:
        written.append(Path(plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png") or out_dir / "confusion_matrix.png"))
    rows = _pick_qualitative(visuals, [v["true_class"] for v in visuals], per_class)
    if rows:
        written.append(Path(plot_qualitative_grid(rows, class_names, out_dir / "qualitative.png") or out_dir / "qualitative.png"))
    return written


def _progress(iterable, description: str, enabled: bool):
    if not enabled:
        return iterable
    from rich.progress import track

    return track(iterable, description=description, transient=True)
