"""Hand-made experiment runs for the report and runner tests: the files `fume train` +
`fume evaluate --save-masks` leave in a run directory, with chosen predictions."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fume.config import FumeConfig, load_config, save_config
from fume.data.frames import load_mask
from fume.evaluation.metrics import METRIC_KEYS

TINY_OVERRIDES = [
    "data.synthetic={n_originals: 12, augmentations: 1, size: [64, 64], seed: 0, class_mix: [1, 1, 1]}",
    "data.image_size=[64,64]", "data.num_workers=0", "data.pin_memory=false", "training.num_epochs=1",
    "training.batch_size=4", "training.early_stopping.enabled=false", "training.checkpoint.every_n_epochs=0",
    "training.checkpoint.monitor=joint_score", "logging.tensorboard=false", "logging.progress_bar=false",
    "logging.metrics_table=false", "logging.log_every_n_steps=1", "validation.batch_size=8", "testing.batch_size=8",
]


def tiny_config(dataset_root: Path, paired_dir: Path | None = None, extra: list[str] = ()) -> FumeConfig:
    overrides = [f"data.dataset_root={dataset_root}", f"data.paired_dir={paired_dir if paired_dir else 'null'}", "data.image_size=[64,64]", *extra]
    return load_config(None, overrides)


def write_fake_run(run_dir: Path, config: FumeConfig, seed: int = 0, p_correct: float = 0.7, p_pixel: float = 0.9,
                   classify: bool = True, segment: bool = True) -> dict:
    """config.yaml, test/predictions.csv (+ masks), test/metrics.json (every key), csv/metrics.csv.
    Predictions: the true class with probability p_correct; each mask pixel kept with p_pixel."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    test = pd.read_csv(config.data.paired_table("test"), keep_default_na=False, dtype={"sample_id": str})
    test_dir = run_dir / "test"
    (test_dir / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for rec in test.to_dict("records"):
        row = {k: rec[k] for k in ("sample_id", "co2_frame", "co2_mask", "ch4_frame", "ch4_mask", "class_id")}
        if classify:
            row["pred_class_id"] = rec["class_id"] if rng.random() < p_correct else (rec["class_id"] + 1) % 3
            for i, name in enumerate(("healthy", "transitional", "acidotic")):
                row[f"prob_{name}"] = 1.0 if i == row["pred_class_id"] else 0.0
        for gas in ("co2", "ch4"):
            row[f"{gas}_pred_mask"] = ""
            if segment and rec[f"{gas}_mask"]:
                truth = load_mask(config.data.dataset_root / rec[f"{gas}_mask"])
                pred = np.where(rng.random(truth.shape) < p_pixel, truth, rng.integers(0, 3, truth.shape)).astype(np.uint8)
                name = f"masks/{rec['sample_id']}_{gas}.png"
                cv2.imwrite(str(test_dir / name), pred)
                row[f"{gas}_pred_mask"] = name
        rows.append(row)
    pd.DataFrame(rows).to_csv(test_dir / "predictions.csv", index=False)
    metrics = {k: None for k in METRIC_KEYS}
    metrics.update({"num_samples": len(rows), "co2_iou_gas": 0.5})  # an extra per-gas key, as evaluate writes
    (test_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "csv").mkdir(exist_ok=True)
    pd.DataFrame({"epoch": [0, 0, 1, 1], "step": [1, 1, 3, 3], "train_loss_epoch": [1.2, None, 0.9, None],
                  "val_miou": [None, 0.3, None, 0.5], "val_balanced_accuracy": [None, 0.4, None, 0.6]}).to_csv(run_dir / "csv" / "metrics.csv", index=False)
    return {"rows": len(rows)}
