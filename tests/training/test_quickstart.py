"""fume quickstart end to end, shrunk to seconds (the real run is measured in the README)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from fume.config import config_file, load_config, resolve_paths
from fume.workflows.quickstart import QUICKSTART_CONFIG, prepare_synthetic_dataset, quickstart

TINY = [
    "data.synthetic.n_originals=18", "data.synthetic.augmentations=1", "data.synthetic.size=[128,96]",
    "data.image_size=[64,64]", "data.num_workers=0", "training.batch_size=4", "training.num_epochs=1",
    "logging.progress_bar=false", "logging.metrics_table=false", "logging.tensorboard=false", "logging.log_every_n_steps=1",
]


def test_quickstart_generates_splits_pairs_trains_and_evaluates(tmp_path):
    text = io.StringIO()
    evaluation = quickstart(tmp_path, overrides=TINY, console=Console(file=text, width=200))
    dataset = tmp_path / "dataset"
    for name in ("annotations.csv", "train_annotations.csv", "test_annotations.csv", "paired_train_annotations.csv", "paired_test_annotations.csv"):
        assert (dataset / name).is_file()
    metrics = json.loads((evaluation.out_dir / "metrics.json").read_text())
    assert metrics["num_samples"] > 0 and 0 <= metrics["miou"] <= 1
    assert evaluation.out_dir.parent.parent == tmp_path / "runs"
    output = text.getvalue()
    assert "FUME on the grouped test split" in output and "balanced_accuracy" in output
    assert "figures:" in output and "qualitative.png" in output and "total" in output
    for figure in evaluation.figures:
        assert figure.is_file()


def test_existing_dataset_is_reused_not_regenerated(tmp_path):
    config = resolve_paths(load_config(config_file(QUICKSTART_CONFIG), [f"data.dataset_root={tmp_path / 'dataset'}", *TINY]))
    quiet = Console(file=io.StringIO())
    prepare_synthetic_dataset(config, quiet)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dataset").glob("*.csv")}
    prepare_synthetic_dataset(config, quiet)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dataset").glob("*.csv")} == stamps
