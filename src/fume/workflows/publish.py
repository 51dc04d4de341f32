"""`fume publish RUN_DIR --out DIR`: a trained run as a model folder the way the field shares
models (fume.models.pretrained describes the folder; `huggingface-cli upload` sends it to the Hub).

The test metrics come from RUN_DIR/test/metrics.json (what `fume experiments` leaves); a run
without them is first evaluated on its test split into RUN_DIR/test (with masks, for the mIoU
interval). The card's 95 % intervals of mIoU and balanced accuracy resample the test recordings
(2000 resamples, fixed seed), as `fume report` does (fume.reporting.stats), from predictions.csv
and the saved masks. The ONNX files come from `fume export`
(fume.workflows.export), so they carry its parity check against PyTorch.

Nothing appears in DIR until every file is written (fume.io.staged_dir).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fume.config import FumeConfig, save_config
from fume.errors import FumeError
from fume.io import staged_dir, write_text
from fume.logs import get_logger
from fume.models.pretrained import CARD_FILE, CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE, save_weights

log = get_logger(__name__)

RESAMPLES = 2000
# (metrics.json key, model-index metric type, name shown), per task.
SEGMENTATION_METRICS = [("miou", "mean_iou", "mIoU"), ("dice", "dice", "Dice"), ("iou_gas", "iou", "IoU of the gas plume"),
                        ("co2_miou", "mean_iou", "CO2 mIoU"), ("ch4_miou", "mean_iou", "CH4 mIoU")]
CLASSIFICATION_METRICS = [("balanced_accuracy", "balanced_accuracy", "Balanced accuracy"), ("accuracy", "accuracy", "Accuracy"),
                          ("macro_f1", "f1", "Macro F1"), ("cohens_kappa", "cohen_kappa", "Cohen's kappa")]
DataKind = Literal["synthetic", "recorded"]


@dataclass
class PublishResult:
    out: Path
    checkpoint: Path
    files: list[Path]
    metrics: dict[str, Any]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run's test metrics belong to: run_info.json's (fume experiments), else
    checkpoints/best.ckpt, else checkpoints/last.ckpt."""
    info = run_dir / "run_info.json"
    if info.is_file():
        named = json.loads(info.read_text(encoding="utf-8")).get("checkpoint")
        if named and Path(named).is_file():
            return Path(named)
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise FumeError(f"{run_dir} holds no checkpoints/best.ckpt or last.ckpt; give a run folder written by fume train or fume experiments")


def bootstrap_intervals(run_dir: Path, num_classes: int, num_seg_classes: int) -> dict[str, tuple[float, float]]:
    """95 % intervals of balanced accuracy and mIoU on RUN_DIR/test (those the run has), with the
    recordings as the unit of resampling, as `fume report` computes them (fume.reporting.stats)."""
    from fume.reporting.pairs import load_pair_stats
    from fume.reporting.stats import balanced_accuracy_stat, miou_stat, recording_bootstrap

    stats = load_pair_stats(run_dir, num_seg_classes)
    out: dict[str, tuple[float, float]] = {}
    if stats.y_pred is not None:
        ci = recording_bootstrap([balanced_accuracy_stat(stats.y_true, stats.y_pred, num_classes)], [], stats.recordings, RESAMPLES)
        out["balanced_accuracy"] = (ci.low, ci.high)
    if stats.gas_intersection is not None:
        ci = recording_bootstrap([miou_stat(stats.gas_intersection, stats.gas_union)], [], stats.recordings, RESAMPLES)
        out["miou"] = (ci.low, ci.high)
    return out


def _complexity(model: Any, size: tuple[int, int]) -> dict[str, Any]:
    from fume.models.complexity import count_macs, count_parameters

    return {"parameters": count_parameters(model), "gmacs": round(count_macs(model, size) / 1e9, 4), "size": f"{size[0]}x{size[1]}"}


def publish_run(
    run_dir: str | Path,
    out: str | Path,
    int8: bool = False,
    calibration: str | Path | None = None,
    license: str = "mit",
    data_kind: DataKind | None = None,
    dataset: str | None = None,
    model_name: str | None = None,
) -> PublishResult:
    """Write OUT/model.safetensors, config.yaml, model.onnx (+ model.int8.onnx with int8, calibrated
    on `calibration`, default the run's train split) and README.md, the model card."""
    from fume.models.checkpoint import load_model_from_checkpoint
    from fume.workflows.evaluate import evaluate_checkpoint
    from fume.workflows.experiments import TEST_DIR, test_metrics
    from fume.workflows.export import export_checkpoint

    run_dir, out = Path(run_dir), Path(out)
    checkpoint = run_checkpoint(run_dir)
    model, config = load_model_from_checkpoint(checkpoint)
    metrics = test_metrics(run_dir)
    if metrics is None or not (run_dir / TEST_DIR / "predictions.csv").is_file():
        log.info(f"{run_dir / TEST_DIR} has no complete test metrics; evaluating {checkpoint.name} on the test split first")
        metrics = evaluate_checkpoint(checkpoint, split="test", out=run_dir / TEST_DIR, save_masks=True, progress=False).metrics
    intervals = bootstrap_intervals(run_dir, config.data.labels.num_classes, config.model.num_seg_classes or 3)
    if int8 and calibration is None:
        calibration = config.data.paired_table("train")
    kind: DataKind = data_kind or ("synthetic" if config.data.synthetic is not None else "recorded")
    name = model_name or f"fume-{config.model.name}-{config.experiment.name}"
    complexity = _complexity(model, tuple(config.data.image_size))

    with staged_dir(out) as staging:
        save_weights(model, staging / WEIGHTS_FILE)
        save_config(config, staging / CONFIG_FILE)
        export = export_checkpoint(checkpoint, staging / ONNX_FILE, quantize="int8" if int8 else None, calibration=calibration,
                                   data_root=config.data.dataset_root if int8 else None)
        card = model_card(config, metrics, intervals, complexity, kind, license, dataset, name, export.to_dict())
        write_text(staging / CARD_FILE, str(card))
        files = sorted(out / p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    return PublishResult(out, checkpoint, files, metrics, intervals)


def _value(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and value == value else None


def model_card(
    config: FumeConfig, metrics: dict[str, Any], intervals: dict[str, tuple[float, float]], complexity: dict[str, Any],
    data_kind: DataKind, license: str, dataset: str | None, name: str, export: dict[str, Any],
) -> Any:
    """The Hugging Face model card (huggingface_hub.ModelCard): YAML front matter with license,
    tags, datasets, parameters, GMACs and a model-index of the test metrics, then the sections."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from fume.models.registry import model_entry

    dataset = dataset or ("fume-synthetic" if data_kind == "synthetic" else Path(config.data.dataset_root).name)
    results = []
    for task_type, task_name, keys in (("image-segmentation", "Plume segmentation (background / tube / gas)", SEGMENTATION_METRICS),
                                       ("image-classification", "Rumen health (" + " / ".join(config.data.labels.class_names) + ")",
                                        CLASSIFICATION_METRICS)):
        for key, metric_type, metric_name in keys:
            value = _value(metrics, key)
            if value is not None:
                results.append(EvalResult(task_type=task_type, task_name=task_name, dataset_type=dataset, dataset_name=dataset,
                                          dataset_split="test", metric_type=metric_type, metric_name=metric_name, metric_value=round(value, 4)))
    tags = ["fume", "optical-gas-imaging", "image-segmentation", "image-classification", "safetensors", "onnx", "pytorch"]
    if data_kind == "synthetic":
        tags.append("synthetic-data")
    data = ModelCardData(
        license=license, library_name="fume", tags=tags, datasets=[dataset], model_name=name, eval_results=results or None,
        parameters=complexity["parameters"], gmacs=complexity["gmacs"], gmacs_input_size=complexity["size"],
    )
    entry = model_entry(config.model.name)
    w, h = config.data.image_size
    options = ", ".join(f"{k}={v}" for k, v in config.model.model_kwargs().items()) or "default options"
    rows = []
    for key, _, label in [*SEGMENTATION_METRICS, *CLASSIFICATION_METRICS]:
        value = _value(metrics, key)
        if value is not None:
            low_high = intervals.get(key)
            ci = f"{100 * low_high[0]:.1f} - {100 * low_high[1]:.1f}" if low_high else ""
            rows.append(f"| {label} | {100 * value:.1f} | {ci} |")
    synthetic = (
        "**The training, validation and test data are synthetic**: frames rendered by FUME's generator "
        "(`fume.data.generate`), not recordings of rumen fluid. The scores below describe how well the model "
        "learned the generator's rules, not how it performs on real optical-gas-imaging frames."
        if data_kind == "synthetic" else
        f"Recorded dual-gas OGI frames from `{Path(config.data.dataset_root).name}`, split by recording (no recording in two splits)."
    )
    int8 = export.get("int8")
    int8_line = (f"- `model.int8.onnx`: int8 (static quantization), change on the validation split: "
                 + ", ".join(f"{k} {100 * v:+.2f} points" for k, v in int8["delta"].items()) + "\n") if int8 else ""
    body = f"""
# {name}

{entry.description}. Model `{config.model.name}` ({options}), trained with FUME on CO2 and CH4
optical-gas-imaging frames at {w}x{h}. For each pair of frames it segments background, tube and gas plume in both
gases and classifies the rumen fluid as {", ".join(config.data.labels.class_names)}.

{complexity["parameters"]:,} parameters, {complexity["gmacs"]:.3f} GMACs per CO2 + CH4 pair at {complexity["size"]}.

## Intended use

Research on non-invasive screening of rumen acidosis from optical gas imaging, and a starting point for
fine-tuning on recorded data. Not a diagnostic device: a veterinarian's pH measurement decides.

## Training data

{synthetic}

Seed {config.experiment.seed}, {config.training.num_epochs} epochs at most, batch {config.training.batch_size}
(the full configuration is `config.yaml`).

## Evaluation

Test split ({metrics.get("num_samples", "?")} pairs), scores in %; 95 % interval of mIoU and balanced accuracy: bootstrap over
the test recordings ({RESAMPLES} resamples; copies of one recording are not independent evidence).

| Metric | Value | 95 % interval |
|---|---|---|
{chr(10).join(rows)}

## Limitations

- {"Trained on synthetic frames only: expect a drop on real recordings until fine-tuned on them." if data_kind == "synthetic" else "Trained on one set of recordings: other cameras, filters or chambers need a check before use."}
- The test split has {metrics.get("num_samples", "?")} pairs; the intervals above show how uncertain the scores are.
- Inputs are resized to {w}x{h}; masks come back at the frames' own size.

## How to use

```python
from fume.models import load_pretrained
model, config = load_pretrained("THIS_FOLDER")
```

```bash
fume predict --model THIS_FOLDER --co2 co2.png --ch4 ch4.png --out predictions
fume predict --onnx THIS_FOLDER/model.onnx --input pairs/ --out predictions   # ONNX Runtime, no torch needed
```

## Files

- `model.safetensors`: weights; `config.yaml`: the configuration they were trained with
- `model.onnx`: fp32 ONNX (opset {export["opset"]}), checked against PyTorch (largest |difference| of the logits
  {max(export["parity"]["max_abs_diff"].values()):.1e})
{int8_line}"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
