"""`fume report` from a hand-made results.csv and hand-made runs: every table and figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reporting_helpers import tiny_config, write_fake_run
from typer.testing import CliRunner

from fume.errors import DataError
from fume.reporting.pairs import load_pair_stats
from fume.reporting.report import build_report
from fume.reporting.stats import balanced_accuracy_weighted, miou_weighted
from fume.workflows.experiments import result_columns, write_leakage_splits

# (grid, kind, group, variant, label, is_reference, split, seed, model, miou, balanced_accuracy, classify, segment)
RUNS = [
    ("baselines", "comparison", "", "fume", "FUME", True, "grouped", 0, "fume", 0.60, 0.70, True, True),
    ("baselines", "comparison", "", "fume", "FUME", True, "grouped", 1, "fume", 0.80, 0.90, True, True),
    ("baselines", "comparison", "", "segmentation_only", "Seg only", False, "grouped", 0, "segmentation_only", 0.50, None, False, True),
    ("baselines", "comparison", "", "segmentation_only", "Seg only", False, "grouped", 1, "segmentation_only", 0.40, None, False, True),
    ("baselines", "comparison", "", "classification_only", "Cls only", False, "grouped", 0, "classification_only", None, 0.50, True, False),
    ("baselines", "comparison", "", "classification_only", "Cls only", False, "grouped", 1, "classification_only", None, 0.60, True, False),
    ("ablations", "ablation", "", "fume", "FUME", True, "grouped", 0, "fume", 0.60, 0.70, True, True),
    ("ablations", "ablation", "fusion", "fusion_concat", "concat", False, "grouped", 0, "fume", 0.55, 0.65, True, True),
    ("ablations", "ablation", "tasks", "tasks_seg", "seg only", False, "grouped", 0, "fume", 0.58, None, False, True),
    ("leakage", "leakage", "", "grouped", "grouped", True, "grouped", 0, "fume", 0.60, 0.70, True, True),
    ("leakage", "leakage", "", "leaky", "leaky", False, "leaky", 0, "fume", 0.75, 0.95, True, True),
]


@pytest.fixture(scope="module")
def experiments(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = tmp_path_factory.mktemp("experiments")
    leakage_dir = exp / "splits" / "leakage"
    write_leakage_splits(tiny_dataset, tiny_dataset, leakage_dir, seed=0)
    rows = []
    for i, (grid, kind, group, variant, label, is_ref, split, seed, model, miou, bal, classify, segment) in enumerate(RUNS):
        # FUME seed 0 is one run shared by the baselines and ablations grids, as the runner does for identical configs
        shared = variant == "fume" and seed == 0
        rel = "runs/baselines/fume/seed0" if shared else f"runs/{grid}/{variant}/seed{seed}"
        if not (exp / rel).exists():
            config = tiny_config(tiny_dataset, leakage_dir / split if grid == "leakage" else None)
            write_fake_run(exp / rel, config, seed=10 + i, p_correct=0.5 + 0.1 * seed, classify=classify, segment=segment)
        cm = [[2, 1, 0], [0, 2, 1], [1, 0, 2]] if classify else None
        rows.append({
            "grid": grid, "kind": kind, "group": group, "variant": variant, "label": label, "seed": seed, "is_reference": is_ref,
            "split": split, "model": model, "status": "ok", "error": "", "run_dir": rel, "config_hash": f"h{i}", "overrides": "",
            "miou": miou, "dice": None if miou is None else miou + 0.1, "balanced_accuracy": bal, "accuracy": bal,
            "macro_f1": bal, "f1_healthy": bal, "f1_transitional": bal, "f1_acidotic": bal, "cohens_kappa": bal,
            "iou_gas": miou, "hd95_gas": 10.0 + seed, "asd_gas": 3.0, "confusion_matrix": json.dumps(cm) if cm else None,
            "params": 1_280_000, "gmacs": 1.9 + 0.1 * i, "latency_ms": 50.0, "fps": 20.0, "complexity_size": "640x480",
        })
    rows.append({"grid": "baselines", "kind": "comparison", "group": "", "variant": "early_fusion", "label": "Early fusion", "seed": 0,
                 "is_reference": False, "split": "grouped", "model": "early_fusion", "status": "failed", "error": "ValueError: boom",
                 "run_dir": "runs/baselines/early_fusion/seed0", "config_hash": "hx", "overrides": ""})
    pd.DataFrame(rows).reindex(columns=result_columns()).to_csv(exp / "results.csv", index=False)
    (exp / "environment.json").write_text(json.dumps({"cpu": "Test CPU", "cpu_count": 2, "torch_threads": 2, "gpu": None,
                                                       "platform": "Linux", "python": "3.11", "torch": "2.x",
                                                       "invocations": [{"seconds": 600.0, "preset": "quick"}]}))
    return exp


@pytest.fixture(scope="module")
def report(experiments: Path):
    return build_report(experiments, resamples=200, qualitative_per_class=1)


def test_every_table_is_written_in_three_formats(report):
    assert set(report.tables) == {"efficiency", "per_class_f1", "ablation", "bootstrap_ci", "leakage"}
    for paths in report.tables.values():
        assert set(paths) == {"md", "csv", "tex"}
        for path in paths.values():
            assert path.is_file() and path.stat().st_size > 0
    tex = report.tables["efficiency"]["tex"].read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex


def test_efficiency_table_rows_columns_and_mean_std(report):
    table = pd.read_csv(report.tables["efficiency"]["csv"])
    # the failed run is left out; the plume-area baselines are rows of the quality table
    assert table["Model"].tolist() == ["FUME", "Seg only", "Cls only", "Area LR (ground-truth masks)", "Area LR (predicted masks, two-stage)"]
    assert table["Seeds"].tolist() == [2, 2, 2, 2, 2]
    for header in ("Penalised", "Excluded", "Rec. bal. acc. (%)", "Off-by-two (%)", "ECE (%)", "Δ mIoU", "Δ Bal. acc."):
        assert header in table.columns or f"{header} mean" in table.columns, header
    for header in ("Accuracy (%)", "mIoU (%)", "Dice (%)", "HD95 (px)", "ASD (px)", "Params (M)", "GMACs", "CPU latency (ms)", "CPU FPS"):
        assert f"{header} mean" in table.columns and f"{header} std" in table.columns
    fume = table.iloc[0]
    assert fume["mIoU (%) mean"] == pytest.approx(70.0)
    assert fume["mIoU (%) std"] == pytest.approx(np.std([60.0, 80.0], ddof=1))  # 14.14
    assert np.isnan(table.iloc[2]["mIoU (%) mean"])  # classification-only: no segmentation
    markdown = report.tables["efficiency"]["md"].read_text()
    assert "| FUME | 2 | 80.0 ± 14.1 |" in markdown  # accuracy 0.7 / 0.9
    assert "image diagonal" in markdown
    assert "n/a" in markdown


def test_area_baseline_equals_sklearn_on_the_masks(report, experiments: Path, tiny_dataset: Path):
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(table: pd.DataFrame, base: dict[str, Path], columns: tuple[str, str]) -> np.ndarray:
        out = []
        for _, row in table.iterrows():
            areas = [(np.asarray(Image.open(base[c] / row[c])) == 2).mean() if isinstance(row[c], str) and row[c] else np.nan for c in columns]
            out.append([np.nan_to_num(areas[0]), np.nan_to_num(areas[1]), np.isfinite(areas[0]), np.isfinite(areas[1])])
        return np.asarray(out, dtype=float)

    train = pd.read_csv(tiny_dataset / "paired_train_annotations.csv", keep_default_na=False)
    test = pd.read_csv(experiments / "runs/baselines/fume/seed0/test/predictions.csv", keep_default_na=False)
    root = {"co2_mask": tiny_dataset, "ch4_mask": tiny_dataset}
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    model.fit(features(train, root, ("co2_mask", "ch4_mask")), train["class_id"])
    expected = balanced_accuracy_score(test["class_id"], model.predict(features(test, root, ("co2_mask", "ch4_mask"))))
    table = pd.read_csv(report.tables["efficiency"]["csv"]).set_index("Model")
    assert table.at["Area LR (ground-truth masks)", "Bal. acc. (%) mean"] == pytest.approx(100 * expected)
    assert np.isfinite(table.at["Area LR (predicted masks, two-stage)", "Bal. acc. (%) mean"])


def test_per_class_and_ablation_tables(report):
    f1 = pd.read_csv(report.tables["per_class_f1"]["csv"])
    assert [c for c in f1.columns if c.endswith(" mean")] == [
        "F1 Healthy (%) mean", "F1 Transitional (%) mean", "F1 Acidotic (%) mean", "Macro F1 (%) mean", "Bal. acc. (%) mean", "Kappa mean"]
    ablation = pd.read_csv(report.tables["ablation"]["csv"])
    assert ablation["Variant"].tolist() == ["FUME", "concat", "seg only"]
    concat = ablation.iloc[1]
    assert concat["Δ mIoU"] == pytest.approx(-5.0) and concat["Δ Bal. acc."] == pytest.approx(-5.0)
    assert "| reference | FUME |" in report.tables["ablation"]["md"].read_text()


def test_bootstrap_rows_match_the_per_pair_statistics(report, experiments: Path):
    ci = pd.read_csv(report.tables["bootstrap_ci"]["csv"])
    assert list(zip(ci["Grid"], ci["Variant"])) == [
        ("baselines", "Seg only"), ("baselines", "Cls only"), ("ablations", "concat"), ("ablations", "seg only")]
    # concat vs FUME (one seed each): the full-sample difference recomputed by hand from the masks and predictions
    fume = load_pair_stats(experiments / "runs/baselines/fume/seed0")
    concat = load_pair_stats(experiments / "runs/ablations/fusion_concat/seed0")
    ones = np.ones(len(fume.y_true))
    row = ci[ci["Variant"] == "concat"].iloc[0]
    expected_miou = miou_weighted(concat.intersection, concat.union, ones) - miou_weighted(fume.intersection, fume.union, ones)
    expected_bal = balanced_accuracy_weighted(concat.y_true, concat.y_pred, ones, 3) - balanced_accuracy_weighted(fume.y_true, fume.y_pred, ones, 3)
    assert row["miou diff"] == pytest.approx(100 * expected_miou)
    assert row["balanced_accuracy diff"] == pytest.approx(100 * expected_bal)
    assert row["miou ci_low"] <= row["miou diff"] <= row["miou ci_high"]
    assert 0 <= row["miou p_holm"] <= 1 and 0 <= row["balanced_accuracy p_holm"] <= 1
    seg_only = ci[ci["Variant"] == "Seg only"].iloc[0]
    assert np.isnan(seg_only["balanced_accuracy diff"]) and np.isfinite(seg_only["miou diff"])  # no classes to compare


def test_leakage_table_shows_the_gap_paired_on_one_test_set(report, experiments: Path):
    table = pd.read_csv(report.tables["leakage"]["csv"])
    bal = table[table["Metric"] == "Bal. acc. (%)"].iloc[0]
    assert bal["grouped mean"] == pytest.approx(70.0) and bal["leaky mean"] == pytest.approx(95.0)
    assert bal["gap"] == pytest.approx(25.0)
    # The CI is of the paired difference on the same test pairs, recomputed from the two runs' predictions.
    grouped = load_pair_stats(experiments / "runs/leakage/grouped/seed0")
    leaky = load_pair_stats(experiments / "runs/leakage/leaky/seed0").aligned(grouped.sample_ids)
    ones = np.ones(len(grouped.y_true))
    expected = balanced_accuracy_weighted(leaky.y_true, leaky.y_pred, ones, 3) - balanced_accuracy_weighted(grouped.y_true, grouped.y_pred, ones, 3)
    miou_row = table[table["Metric"] == "mIoU (%)"].iloc[0]
    assert bal["gap diff"] == pytest.approx(100 * expected) and np.isfinite(miou_row["gap diff"])
    markdown = report.tables["leakage"]["md"].read_text()
    assert "+25.0" in markdown
    assert "grouped: 0 of" in markdown  # grouped: no test recording has copies in train
    shared = int(markdown.split("leaky: ")[1].split(" of")[0])
    assert shared > 0


def test_every_figure_exists_as_png_and_pdf(report):
    names = {p.relative_to(report.out / "figures").as_posix() for p in report.figures}
    for stem in ("miou_bars", "f1_radar", "ablation_dice", "efficiency_scatter", "confusion/baselines-fume",
                 "curves/baselines-fume-seed0", "qualitative/healthy", "qualitative/transitional", "qualitative/acidotic"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names, stem
    assert "confusion/baselines-segmentation_only.png" not in names  # no classification, no matrix
    for path in report.figures:
        assert path.stat().st_size > 0


def test_report_md_links_everything_and_states_the_setup(report):
    text = report.report_md.read_text()
    for heading in ("## Setup", "## Models compared", "## Ablations", "## Which differences are real", "## Leakage", "## Training curves"):
        assert heading in text
    assert "Test CPU" in text and "Seeds**: 0, 1" in text and "grouped by recording" in text
    assert "pigeonhole" in text and "Holm" in text  # the interval scheme and the correction are stated
    assert "early_fusion seed 0 failed" in text
    import re

    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (report.out / link).is_file(), link


def test_report_command_and_missing_results(experiments: Path, tmp_path: Path):
    from fume.cli import app

    # a smaller copy (the leakage grid only) keeps the figure drawing short
    small = tmp_path / "small"
    shutil.copytree(experiments / "runs", small / "runs")
    shutil.copytree(experiments / "splits", small / "splits")
    results = pd.read_csv(experiments / "results.csv")
    results[results["grid"] == "leakage"].to_csv(small / "results.csv", index=False)
    result = CliRunner().invoke(app, ["report", str(small), "--out", str(tmp_path / "r"), "--resamples", "100", "--qualitative", "0"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.md").is_file() and (tmp_path / "r" / "tables" / "leakage.tex").is_file()
    (small / "results.csv").unlink()
    with pytest.raises(DataError, match="results.csv not found"):
        build_report(small)
