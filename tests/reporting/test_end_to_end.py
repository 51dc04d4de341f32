"""The real thing at tiny size: fume experiments trains and evaluates two variants, fume report
reads them (no stand-ins)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from reporting_helpers import TINY_OVERRIDES

from fume.config import shipped_configs
from fume.reporting.grid import ComplexitySettings, Preset
from fume.reporting.report import build_report
from fume.workflows.experiments import run_experiments

BASE = shipped_configs()["fume_fastscnn"]


def test_experiments_then_report(tmp_path: Path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "mini", "kind": "comparison", "base": str(BASE), "reference": "fume",
        "variants": [
            {"name": "fume"},
            # a model without a classifier: evaluation, results and report must cope with the missing outputs
            {"name": "segmentation_only", "overrides": {"model.name": "segmentation_only", "model.encoder": None, "model.fusion": None,
                                                        "model.tasks": None, "model.modalities": None}},
        ],
    }))
    preset = Preset(overrides=TINY_OVERRIDES, seeds=[0], threads=1,
                    complexity=ComplexitySettings(size=(64, 64), latency_runs=2, latency_warmup=0))
    result = run_experiments([grid], tmp_path / "exp", preset=preset)
    assert result.failed == [] and result.trained == 2
    results = pd.read_csv(result.results_csv)
    assert results["status"].tolist() == ["ok", "ok"]
    for column in ("miou", "params", "gmacs", "latency_ms", "train_seconds"):
        assert results[column].notna().all(), column
    assert results["balanced_accuracy"].isna().tolist() == [False, True]
    fume = results.iloc[0]
    assert 1_000_000 < fume["params"] < 3_000_000 and fume["complexity_size"] == "64x64"
    run = tmp_path / "exp" / fume["run_dir"]
    assert (run / "test" / "predictions.csv").is_file() and list((run / "test" / "masks").glob("*.png"))

    report = build_report(tmp_path / "exp", resamples=100, qualitative_per_class=1)
    ci = pd.read_csv(report.tables["bootstrap_ci"]["csv"])
    assert ci["Variant"].tolist() == ["segmentation_only"] and ci["miou diff"].notna().all() and ci["balanced_accuracy diff"].isna().all()
    efficiency = pd.read_csv(report.tables["efficiency"]["csv"])
    # the report's table holds what the run measured
    assert efficiency.iloc[0]["mIoU (%) mean"] == pytest.approx(100 * fume["miou"])
