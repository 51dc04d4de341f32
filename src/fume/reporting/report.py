"""`fume report`: tables, confidence intervals, the leakage study and figures from an experiments
folder (results.csv + the runs), and report.md linking all of it.

REPORT_DIR/
  report.md
  tables/<name>.{md,csv,tex}     efficiency (with the plume-area baselines), per_class_f1, ablation,
                                 area_baseline (when there is no comparison grid), bootstrap_ci, leakage
  figures/<name>.{png,pdf}       miou_bars, f1_radar, ablation_dice, efficiency_scatter,
                                 confusion/<grid>-<variant>, curves/<grid>-<variant>-seed<s>[-fold<k>],
                                 qualitative/<class>, gradcam/<class>

Intervals are by recording (fume.reporting.stats; the scheme is stated in report.md), with folds
pooled per seed; differences against a grid's reference are Holm-adjusted over the grid's rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fume.errors import DataError, FumeError
from fume.io import write_text
from fume.reporting import figures as rfig
from fume.reporting import tables as rtab
from fume.reporting.grid import ENVIRONMENT_FILE, RESULTS_FILE
from fume.reporting.pairs import PairStats, load_pair_stats
from fume.reporting.stats import DEFAULT_RESAMPLES, Interval, balanced_accuracy_stat, holm, mean_std, miou_stat, recording_bootstrap

DELTA_KEYS = [rtab.Column("mIoU", "miou"), rtab.Column("Bal. acc.", "balanced_accuracy")]
# How every interval of the report is drawn (fume.reporting.stats), stated once in report.md.
BOOTSTRAP_SCHEME = (
    "Intervals are by test **recording** (original_sample_id), never by pair: the variance of the difference is estimated from "
    "{resamples} resamples (numpy, seed 0) that draw the test recordings with replacement and carry all their frames and pairs "
    "(the same draws for both models: a paired difference). mIoU: each distinct frame of recording r counts n_r times (n_r = times "
    "r is drawn). Balanced accuracy: a pair of a CO₂ frame of recording a and a CH₄ frame of recording b counts n_a × n_b times "
    "(Owen's pigeonhole bootstrap for crossed factors; a pair within one recording or with one gas n_a times), and the variance "
    "of resampling those two-recording pairs on their own is subtracted twice (the two-way cluster-robust variance of Cameron, "
    "Gelbach & Miller; never below the pair-level variance), so that augmented copies of a recording neither narrow nor widen "
    "the interval. With several seeds, the variance of each model's mean over its seeds is added. Interval: difference ± 1.96 "
    "SE; p: two-sided normal p-value."
)


@dataclass
class ReportResult:
    out: Path
    report_md: Path
    tables: dict[str, dict[str, Path]] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_results(experiments_dir: Path) -> pd.DataFrame:
    path = experiments_dir / RESULTS_FILE
    if not path.is_file():
        raise DataError(f"{path} not found; run `fume experiments GRID.yaml --out {experiments_dir}` first")
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    required = {"grid", "kind", "variant", "seed", "status", "run_dir", "is_reference"}
    missing = sorted(required - set(table.columns))
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; was it written by `fume experiments`?")
    table["group"] = table["group"].astype(object).fillna("") if "group" in table else ""
    table["label"] = table["label"].astype(object).fillna(table["variant"]) if "label" in table else table["variant"]
    table["is_reference"] = table["is_reference"].astype(str).str.lower() == "true"
    return table


class _Pairs:
    """Per-pair statistics of each run, loaded once."""

    def __init__(self, experiments_dir: Path, warnings: list[str]) -> None:
        self.dir = experiments_dir
        self.cache: dict[str, PairStats | None] = {}
        self.warnings = warnings

    def __call__(self, run_dir: str) -> PairStats | None:
        if run_dir not in self.cache:
            try:
                self.cache[run_dir] = load_pair_stats(self.dir / run_dir)
            except FumeError as err:
                self.warnings.append(f"{run_dir}: no per-pair statistics ({err})")
                self.cache[run_dir] = None
        return self.cache[run_dir]


# ------------------------------------------------------------------ confidence intervals


def _seed_stats(pairs: _Pairs, runs: pd.DataFrame) -> list[PairStats]:
    """One PairStats per seed; with folds, the folds' test sets joined (each recording is tested in one fold)."""
    out = []
    folds = pd.to_numeric(runs["fold"], errors="coerce") if "fold" in runs else pd.Series(np.nan, index=runs.index)
    for _, part in runs.assign(_fold=folds).sort_values("_fold").groupby("seed", sort=True):
        stats = [pairs(r) for r in part["run_dir"]]
        if any(s is None for s in stats):
            continue
        prefixes = [f"fold{int(f)}-" if np.isfinite(f) else "" for f in part["_fold"]]
        out.append(stats[0] if len(stats) == 1 else PairStats.concat(stats, prefixes))
    return out


def compare_to_reference(
    pairs: _Pairs, runs: pd.DataFrame, reference_runs: pd.DataFrame, num_classes: int, resamples: int,
) -> tuple[Interval | None, Interval | None]:
    """Recording-level bootstrap CIs (balanced accuracy, mIoU) of `runs` minus `reference_runs`
    on the same test pairs (fume.reporting.stats)."""
    model, ref = _seed_stats(pairs, runs), _seed_stats(pairs, reference_runs)
    if not model or not ref:
        return None, None
    order = ref[0].sample_ids
    try:
        model = [s.aligned(order) for s in model]
        ref = [s.aligned(order) for s in ref]
    except DataError:
        pairs.warnings.append(f"{runs.iloc[0]['grid']}/{runs.iloc[0]['variant']}: tested on other pairs than the reference; no paired CI")
        return None, None
    recordings = ref[0].recordings
    bal = miou = None
    if all(s.y_pred is not None for s in model + ref):
        bal = recording_bootstrap([balanced_accuracy_stat(s.y_true, s.y_pred, num_classes) for s in model],
                                  [balanced_accuracy_stat(s.y_true, s.y_pred, num_classes) for s in ref], recordings, resamples)
    if all(s.gas_intersection is not None for s in model + ref):
        miou = recording_bootstrap([miou_stat(s.gas_intersection, s.gas_union) for s in model],
                                   [miou_stat(s.gas_intersection, s.gas_union) for s in ref], recordings, resamples)
    return bal, miou


def shared_recordings(experiments_dir: Path, run_dir: str) -> dict[str, Any] | None:
    """How many test recordings (original_sample_id) of a run's split also appear in its training split."""
    from fume.config import load_config
    from fume.data.layout import read_annotations

    try:
        config = load_config(experiments_dir / run_dir / "config.yaml")
        tables_dir = config.data.paired_tables_dir
        train, test = read_annotations(tables_dir, "train"), read_annotations(tables_dir, "test")
    except FumeError:
        return None
    shared = set(train["original_sample_id"]) & set(test["original_sample_id"])
    return {
        "test_recordings": int(test["original_sample_id"].nunique()),
        "shared_recordings": len(shared),
        "test_rows_from_shared": float(test["original_sample_id"].isin(shared).mean()) if len(test) else float("nan"),
    }


# ------------------------------------------------------------------ the report


def reference_intervals(ok: pd.DataFrame, grids: list[str], kinds: dict[str, str], pairs: _Pairs, num_classes: int, resamples: int,
                        warnings: list[str]) -> tuple[list[dict[str, Any]], dict[tuple[str, str], tuple[bool, bool]]]:
    """Rows of the CI table (each variant against its grid's reference) and, per (grid, label),
    whether the Holm-adjusted p (over the grid's rows, each metric on its own) is below 0.05
    for (balanced accuracy, mIoU)."""
    significant: dict[tuple[str, str], tuple[bool, bool]] = {}
    rows = []
    for grid in [g for g in grids if kinds[g] != "leakage"]:
        runs = ok[ok["grid"] == grid]
        reference = runs[runs["is_reference"]]
        if reference.empty:
            warnings.append(f"grid {grid}: no finished reference run; no confidence intervals")
            continue
        ref_label = reference.iloc[0]["label"]
        grid_rows = []
        for variant, part in _variants(runs[~runs["is_reference"]]):
            same = part["run_dir"].tolist() == reference["run_dir"].tolist()
            bal, miou = (None, None) if same else compare_to_reference(pairs, part, reference, num_classes, resamples)
            grid_rows.append({"Grid": grid, "Variant": part.iloc[0]["label"], "Reference": ref_label, "Runs": len(part),
                              "_intervals": (bal, miou)})
        for k, key in enumerate(("balanced_accuracy", "miou")):
            adjusted = holm([r["_intervals"][k].p_value if r["_intervals"][k] is not None else np.nan for r in grid_rows])
            for r, p_adj in zip(grid_rows, adjusted):
                r[f"_holm_{key}"] = p_adj
        for r in grid_rows:
            (bal, miou), p_bal, p_miou = r.pop("_intervals"), r.pop("_holm_balanced_accuracy"), r.pop("_holm_miou")
            significant[(r["Grid"], r["Variant"])] = (np.isfinite(p_bal) and p_bal < 0.05, np.isfinite(p_miou) and p_miou < 0.05)
            rows.append({**r, "Δ bal. acc. [95% CI]": rtab.format_interval(bal, significant=p_bal < 0.05),
                         "p bal. acc. (Holm)": _p_text(p_bal),
                         "Δ mIoU [95% CI]": rtab.format_interval(miou, significant=p_miou < 0.05), "p mIoU (Holm)": _p_text(p_miou),
                         **_interval_numbers("balanced_accuracy", bal), "balanced_accuracy p_holm": p_bal,
                         **_interval_numbers("miou", miou), "miou p_holm": p_miou})
    return rows, significant


AREA_LABELS = {"ground_truth": "Area LR (ground-truth masks)", "predicted": "Area LR (predicted masks, two-stage)"}


def area_baseline_rows(experiments_dir: Path, reference: pd.DataFrame, class_names: list[str], warnings: list[str]) -> pd.DataFrame:
    """Rows shaped like results.csv rows for the plume-area logistic regression
    (fume.evaluation.area_baseline) of each reference run: fitted on the run's training split,
    scored on its test pairs from the ground-truth masks and from the run's predicted masks."""
    from fume.config import load_config
    from fume.data.dataset import read_paired_table
    from fume.evaluation.area_baseline import area_baselines

    rows = []
    for _, run in reference.iterrows():
        run_dir = experiments_dir / run["run_dir"]
        try:
            config = load_config(run_dir / "config.yaml")
            train = read_paired_table(config.data.paired_table("train"))
            predictions = pd.read_csv(run_dir / "test" / "predictions.csv", keep_default_na=False, na_values=[""])
            scores = area_baselines(train, Path(config.data.dataset_root), predictions, run_dir / "test", class_names)
        except (FumeError, OSError, ValueError) as err:
            warnings.append(f"{run['run_dir']}: no plume-area baseline ({err})")
            continue
        for kind, values in scores.items():
            rows.append({**{k: run[k] for k in ("grid", "kind", "seed", "fold") if k in run}, "variant": f"area_lr_{kind}",
                         "label": AREA_LABELS[kind], "group": "baseline", "is_reference": False, "run_dir": "", **values})
    return pd.DataFrame(rows)


def _mark_deltas(table: rtab.Table, grid: str, label_header: str, significant: dict[tuple[str, str], tuple[bool, bool]]) -> None:
    """Append * to the Δ columns of the rows whose Holm-adjusted difference is significant."""
    for i, label in enumerate(table.display[label_header]):
        marks = significant.get((grid, label), (False, False))
        for header, mark in zip(("Δ Bal. acc.", "Δ mIoU"), marks):
            if mark and header in table.display:
                table.display.at[i, header] = f"{table.display.at[i, header]}*"


def _variants(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(v, part) for v, part in runs.groupby("variant", sort=False)]


def _class_names(experiments_dir: Path, run_dir: str) -> list[str]:
    from fume.config import load_config

    try:
        return list(load_config(experiments_dir / run_dir / "config.yaml").data.labels.class_names)
    except FumeError:
        return ["Healthy", "Transitional", "Acidotic"]


def _mean(part: pd.DataFrame, key: str) -> tuple[float, float]:
    mean, std, _ = mean_std([float(v) for v in pd.to_numeric(part[key], errors="coerce")]) if key in part else (np.nan, np.nan, 0)
    return mean, std


def build_report(experiments_dir: str | Path, out: str | Path | None = None, resamples: int = DEFAULT_RESAMPLES, qualitative_per_class: int = 3,
                 tune_dir: str | Path | None = None) -> ReportResult:
    """`tune_dir`: also report a `fume tune` study from that folder (fume.reporting.search)."""
    experiments_dir = Path(experiments_dir).resolve()
    out = Path(out).resolve() if out is not None else experiments_dir / "report"
    results = read_results(experiments_dir)
    warnings: list[str] = []
    failed = results[results["status"] != "ok"]
    for _, row in failed.iterrows():
        warnings.append(f"{row['grid']}/{row['variant']} seed {row['seed']} failed and is left out: {row.get('error', '')}")
    ok = results[results["status"] == "ok"].copy()
    if ok.empty:
        raise DataError(f"{experiments_dir / RESULTS_FILE} has no finished run to report on")
    env = {}
    if (experiments_dir / ENVIRONMENT_FILE).is_file():
        env = json.loads((experiments_dir / ENVIRONMENT_FILE).read_text(encoding="utf-8"))
    class_names = _class_names(experiments_dir, ok.iloc[0]["run_dir"])
    pairs = _Pairs(experiments_dir, warnings)
    result = ReportResult(out=out, report_md=out / "report.md", warnings=warnings)
    tables_dir, figures_dir = out / "tables", out / "figures"
    sections: list[str] = []

    folds = pd.to_numeric(ok["fold"], errors="coerce").nunique() if "fold" in ok else 0
    over = f"{folds} folds x seeds" if folds else "seeds"

    def add_table(name: str, table: rtab.Table) -> str:
        if folds:  # each row's runs are folds x seeds
            table.numeric = table.numeric.rename(columns={"Seeds": "Folds x seeds"})
            table.display = table.display.rename(columns={"Seeds": "Folds x seeds"})
        paths = rtab.write_table(table, tables_dir / name)
        result.tables[name] = paths
        links = " · ".join(f"[{fmt.upper()}]({os.path.relpath(p, out)})" for fmt, p in paths.items())
        notes = "".join(f"\n{n}\n" for n in table.notes)
        return f"**{table.title}** ({links})\n\n{rtab.to_markdown(table.display)}{notes}\n"

    def add_figure(paths: list[Path], caption: str) -> str:
        result.figures.extend(paths)
        png = next(p for p in paths if p.suffix == ".png")
        pdf = [p for p in paths if p.suffix == ".pdf"]
        extra = f" ([PDF]({os.path.relpath(pdf[0], out)}))" if pdf else ""
        return f"![{caption}]({os.path.relpath(png, out)})\n\n*{caption}*{extra}\n\n"

    grids = list(dict.fromkeys(ok["grid"]))
    kinds = {g: ok[ok["grid"] == g].iloc[0]["kind"] for g in grids}
    comparison = ok[ok["grid"].isin([g for g in grids if kinds[g] == "comparison"])]
    ablation = ok[ok["grid"].isin([g for g in grids if kinds[g] == "ablation"])]
    leakage = ok[ok["grid"].isin([g for g in grids if kinds[g] == "leakage"])]
    label_cols = [("Model", "label")]
    rows, significant = reference_intervals(ok, grids, kinds, pairs, len(class_names), resamples, warnings)

    # A simple baseline in every report: plume-area logistic regression beside the reference model.
    base_grid = next((g for g in grids if kinds[g] == "comparison"), next((g for g in grids if kinds[g] != "leakage"), None))
    base_reference = ok[(ok["grid"] == base_grid) & ok["is_reference"]] if base_grid is not None else ok.iloc[:0]
    area_rows = area_baseline_rows(experiments_dir, base_reference, class_names, warnings) if len(base_reference) else pd.DataFrame()
    area_note = ("Area LR: logistic regression on the gas-plume areas of both frames (fraction of the frame, and which gases are "
                 "present), fitted on the training split's ground-truth masks, applied to the test pairs' ground-truth masks (the "
                 "ceiling the label physics allows an area-only decision) and to the reference model's predicted masks (two-stage).")

    # 1. Comparison: efficiency / quality, per-class F1, figures.
    if not comparison.empty:
        text = "## Models compared\n\n"
        comparison_grids = list(dict.fromkeys(comparison["grid"]))
        reference = comparison[comparison["is_reference"]] if len(comparison_grids) == 1 else comparison.iloc[:0]
        with_areas = pd.concat([comparison, area_rows], ignore_index=True)
        t = rtab.summary_table(f"Quality and efficiency (test split, mean ± std over {over})", with_areas, rtab.EFFICIENCY_COLUMNS, label_cols,
                               delta_against=reference if len(reference) else None, delta_keys=DELTA_KEYS if len(reference) else ())
        if len(area_rows):
            t.notes.append(area_note)
        if len(reference):
            _mark_deltas(t, comparison_grids[0], "Model", significant)
            t.notes.append("Δ: difference of the means against the reference in percentage points; * = significant after the Holm "
                           "correction over this table's rows (recording-level bootstrap, see below).")
        t.notes.append("HD95 / ASD: a frame where exactly one of prediction and ground truth has gas counts with the image diagonal "
                       "(penalised); a frame where neither has gas is left out (excluded). Rec. bal. acc.: balanced accuracy of one "
                       "decision per recording (mean class probability over its pairs). Off-by-two: Healthy predicted for Acidotic or "
                       "the reverse. ECE: 15 equal-width bins of the top probability.")
        t.notes.append(f"GMACs and CPU latency for one CO₂ + CH₄ pair (batch 1) at {comparison.iloc[0].get('complexity_size', '?')}; "
                       f"latency is the median of timed eager PyTorch calls on the experiments machine ({_threads(comparison)} torch thread(s)). "
                       "HD95 / ASD of the gas plume in pixels at native resolution.")
        text += add_table("efficiency", t)
        t = rtab.summary_table("Per-class F1, macro F1 and balanced accuracy (test split)", with_areas, rtab.F1_COLUMNS, label_cols)
        text += add_table("per_class_f1", t)
        labels, means, stds = [], [], []
        for _, part in _variants(comparison):
            m, s = _mean(part, "miou")
            labels.append(part.iloc[0]["label"]), means.append(m * 100), stds.append(s * 100)
        text += add_figure(rfig.bar_chart(labels, means, stds, "mIoU (%)", "Segmentation: mIoU on the test split", figures_dir / "miou_bars"),
                           "mIoU per model (mean ± std over seeds; models that do not segment show n/a)")
        series = {}
        for _, part in _variants(comparison):
            values = [_mean(part, k)[0] * 100 for k in ("f1_healthy", "f1_transitional", "f1_acidotic", "macro_f1", "balanced_accuracy")]
            if np.isfinite(values).any():
                series[part.iloc[0]["label"]] = values
        if series:
            axes = [f"F1 {n}" for n in class_names] + ["macro F1", "bal. acc."]
            text += add_figure(rfig.radar_chart(axes, series, "Classification per class (%)", figures_dir / "f1_radar"),
                               "Per-class F1, macro F1 and balanced accuracy (%) of each classifying model")
        sections.append(text)

    elif len(area_rows):
        t = rtab.summary_table(f"Quality against a plume-area baseline (test split, mean ± std over {over})",
                               pd.concat([base_reference, area_rows], ignore_index=True), rtab.ABLATION_COLUMNS, label_cols)
        t.notes.append(area_note)
        sections.append("## A simple baseline\n\n" + add_table("area_baseline", t))

    # 2. Ablations.
    if not ablation.empty:
        text = "## Ablations\n\n"
        for grid in list(dict.fromkeys(ablation["grid"])):
            runs = ablation[ablation["grid"] == grid]
            reference = runs[runs["is_reference"]]
            label = [("Group", "group"), ("Variant", "label")]
            t = rtab.summary_table(f"Ablations ({grid}): change against {reference.iloc[0]['label'] if len(reference) else 'the reference'}",
                                   runs, rtab.ABLATION_COLUMNS, label, delta_against=reference if len(reference) else None,
                                   delta_keys=DELTA_KEYS if len(reference) else ())
            is_ref = [v == reference.iloc[0]["label"] for v in t.display["Variant"]] if len(reference) else [False] * len(t.display)
            t.display["Group"] = ["reference" if r else (g or "—") for r, g in zip(is_ref, t.display["Group"])]
            _mark_deltas(t, grid, "Variant", significant)
            t.notes.append("Δ: difference of the means against the reference in percentage points; * = significant after the Holm "
                           "correction over this table's rows (recording-level bootstrap; intervals and adjusted p-values below).")
            text += add_table("ablation" if len(set(ablation["grid"])) == 1 else f"ablation_{grid}", t)
            variants = _variants(runs[~runs["is_reference"]])
            ref_dice = _mean(reference, "dice")[0] * 100 if len(reference) else np.nan
            text += add_figure(
                rfig.grouped_bars([p.iloc[0]["group"] or "other" for _, p in variants], [p.iloc[0]["label"] for _, p in variants],
                                  [_mean(p, "dice")[0] * 100 for _, p in variants], [_mean(p, "dice")[1] * 100 for _, p in variants],
                                  ref_dice, "FUME" if len(reference) else "reference", "Dice (%)", f"Ablations ({grid}): Dice on the test split",
                                  figures_dir / ("ablation_dice" if len(set(ablation["grid"])) == 1 else f"ablation_dice_{grid}")),
                "Dice of each ablation variant, coloured by group; dashed line: the reference")
        sections.append(text)

    # 3. The recording-level CIs computed above.
    if rows:
        frame = pd.DataFrame(rows)
        display_cols = ["Grid", "Variant", "Reference", "Runs", "Δ bal. acc. [95% CI]", "p bal. acc. (Holm)", "Δ mIoU [95% CI]", "p mIoU (Holm)"]
        t = rtab.Table("Recording-level bootstrap 95 % CIs of the difference against the reference (percentage points)",
                       frame.drop(columns=display_cols[4:]), frame[display_cols])
        t.notes.append(BOOTSTRAP_SCHEME.format(resamples=resamples))
        t.notes.append("p (Holm): two-sided bootstrap p-values adjusted with the Holm-Bonferroni method over the rows of each grid "
                       "(each metric on its own); * = adjusted p < 0.05. Runs: seeds (x folds) per variant.")
        if int(ok["seed"].nunique()) == 1:
            t.notes.append("**One seed per model**: these intervals reflect the test recordings only; seed-to-seed variation of "
                           "training is not in them.")
        sections.append("## Which differences are real\n\n" + add_table("bootstrap_ci", t))

    # 4. Leakage study: both conditions tested on the same held-out recordings, paired by recording.
    if not leakage.empty:
        text = "## Leakage: copies of the test recordings in training\n\n"
        for grid in list(dict.fromkeys(leakage["grid"])):
            runs = leakage[leakage["grid"] == grid]
            grouped, leaky = runs[runs["split"] == "grouped"], runs[runs["split"] == "leaky"]
            if grouped.empty or leaky.empty:
                warnings.append(f"grid {grid}: needs a finished grouped and a finished leaky run for the leakage table")
                continue
            bal, miou = compare_to_reference(pairs, leaky, grouped, len(class_names), resamples)
            gaps = {"balanced_accuracy": bal, "miou": miou}
            numeric, display = [], []
            for c in rtab.LEAKAGE_COLUMNS:
                (gm, gs, gn), (rm, rs, rn) = (mean_std([float(v) for v in pd.to_numeric(p[c.key], errors="coerce")]) for p in (grouped, leaky))
                gap = (rm - gm) * c.scale
                interval = gaps.get(c.key)
                numeric.append({"Metric": c.header, "grouped mean": gm * c.scale, "grouped std": gs * c.scale, "leaky mean": rm * c.scale,
                                "leaky std": rs * c.scale, "gap": gap, **_interval_numbers("gap", interval)})
                display.append({"Metric": c.header, "Grouped": rtab.format_value(gm, gs, gn, c), "Leaky": rtab.format_value(rm, rs, rn, c),
                                "Gap (leaky − grouped)": f"{gap:+.1f}" if np.isfinite(gap) else "n/a",
                                "95% CI of gap": rtab.format_interval(interval) if interval is not None else "—"})
            t = rtab.Table(f"Leakage study ({grid}): the same model and test recordings, with or without other copies of them in training",
                           pd.DataFrame(numeric), pd.DataFrame(display))
            for name, part in (("grouped", grouped), ("leaky", leaky)):
                shared = shared_recordings(experiments_dir, part.iloc[0]["run_dir"])
                if shared:
                    t.notes.append(f"{name}: {shared['shared_recordings']} of {shared['test_recordings']} test recordings have copies in training.")
            t.notes.append("Both conditions are tested on the same pairs of the same held-out recordings; the leaky one adds other "
                           "augmented copies of those recordings to training, as a row-level random split does. CI of the gap: paired, "
                           "by recording, as for the table of differences against the reference.")
            text += add_table("leakage" if len(set(leakage["grid"])) == 1 else f"leakage_{grid}", t)
        sections.append(text)

    # 5. Efficiency scatter over the compared models (or every model when no comparison grid).
    scatter_runs = comparison if not comparison.empty else ok[ok["kind"] != "leakage"]
    points = [(p.iloc[0]["label"], _mean(p, "gmacs")[0], _mean(p, "miou")[0] * 100, _mean(p, "params")[0] / 1e6)
              for _, p in scatter_runs.groupby(["grid", "variant"], sort=False)]
    points = [pt for pt in points if np.isfinite(pt[1]) and np.isfinite(pt[2])]
    if points:
        size = scatter_runs.iloc[0].get("complexity_size", "")
        text = "## Cost against quality\n\n" + add_figure(
            rfig.efficiency_scatter([p[0] for p in points], [p[1] for p in points], [p[2] for p in points], [p[3] for p in points],
                                    "Efficiency: GMACs vs mIoU (marker size: parameters)", figures_dir / "efficiency_scatter",
                                    size_label=f"GMACs per pair at {size}"),
            "GMACs per CO₂ + CH₄ pair against test mIoU")
        sections.append(text)

    if tune_dir is not None:  # the hyperparameter search behind the configs
        from fume.reporting.search import search_section

        text, figures = search_section(tune_dir, out, figures_dir)
        result.figures.extend(figures)
        sections.append(text)

    # 6. Per-run figures: confusion matrices, training curves, qualitative grids.
    sections.append(_per_run_figures(experiments_dir, ok, class_names, figures_dir, add_figure, qualitative_per_class, warnings))

    header = _header(experiments_dir, ok, failed, env, class_names)
    body = "\n".join(s for s in sections if s)
    notes = "" if not warnings else "## Notes\n\n" + "".join(f"- {w}\n" for w in warnings)
    write_text(result.report_md, header + body + notes)
    return result


def _threads(runs: pd.DataFrame) -> str:
    values = pd.to_numeric(runs.get("latency_threads", pd.Series(dtype=float)), errors="coerce").dropna().unique()
    return ", ".join(str(int(v)) for v in values) or "?"


def _p_text(p: float) -> str:
    return "n/a" if not np.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _interval_numbers(prefix: str, interval: Interval | None) -> dict[str, float]:
    if interval is None:
        return {f"{prefix} diff": np.nan, f"{prefix} ci_low": np.nan, f"{prefix} ci_high": np.nan}
    return {f"{prefix} diff": interval.difference * 100, f"{prefix} ci_low": interval.low * 100, f"{prefix} ci_high": interval.high * 100}


def _header(experiments_dir: Path, ok: pd.DataFrame, failed: pd.DataFrame, env: dict[str, Any], class_names: list[str]) -> str:
    from fume.config import load_config

    first = load_config(experiments_dir / ok.iloc[0]["run_dir"] / "config.yaml")
    data = first.data
    lines = ["# FUME experiment report", ""]
    lines.append(f"Experiments folder: `{experiments_dir}`; {len(ok)} finished runs ({ok['run_dir'].nunique()} trained), {len(failed)} failed.")
    lines.append("")
    lines.append("## Setup")
    lines.append("")
    if data.synthetic is not None:
        s = data.synthetic
        lines.append(f"- **Data**: FUME's synthetic dual-gas OGI dataset, {s.n_originals} recordings x {1 + s.augmentations} frames "
                     f"({s.size[0]}x{s.size[1]} px, generator seed {s.seed}), at `{data.dataset_root}`.")
    else:
        lines.append(f"- **Data**: `{data.dataset_root}`.")
    counts = _pair_counts(data)
    if counts:
        lines.append(f"- **Split**: grouped by recording (original_sample_id), stratified by class, 70/15/15; pairs per split: {counts}. "
                     "The leakage study adds other augmented copies of the test recordings to training and tests both conditions on "
                     "the same held-out pairs.")
    folds = sorted({int(f) for f in pd.to_numeric(ok["fold"], errors="coerce").dropna()}) if "fold" in ok else []
    if folds:
        lines.append(f"- **Cross-validation**: {len(folds)} grouped folds (comparison and ablation grids): each fold holds out other "
                     "recordings, dealt to the folds class by class; the other recordings are split 85/15 into train and val. Tables "
                     "show mean ± std over folds (and seeds); intervals pool every fold's held-out recordings.")
    lines.append(f"- **Budget**: images resized to {data.image_size[0]}x{data.image_size[1]}, "
                 f"{first.training.num_epochs} epochs max, batch {first.training.batch_size}, AdamW lr {first.training.optimizer.lr:g}, "
                 f"early stopping {'on' if first.training.early_stopping.enabled else 'off'}; best checkpoint by validation "
                 f"{first.training.checkpoint.monitor}. Same data, splits and budget for every variant.")
    seeds = sorted({int(s) for s in ok["seed"]})
    lines.append(f"- **Seeds**: {', '.join(map(str, seeds))} (tables show mean ± std over seeds; a single seed shows the value alone).")
    lines.append(f"- **Classes**: {', '.join(class_names)}. Metrics on the test split; segmentation at the frames' native resolution.")
    if env:
        gpu = env.get("gpu") or "no GPU"
        lines.append(f"- **Machine**: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} CPUs, {env.get('torch_threads', '?')} torch threads), "
                     f"{gpu}; {env.get('platform', '')}; Python {env.get('python', '')}, torch {env.get('torch', '')}.")
        invocations = env.get("invocations", [])
        if invocations:
            total = sum(i.get("seconds", 0) for i in invocations)
            lines.append(f"- **Wall time**: {total / 60:.1f} min over {len(invocations)} `fume experiments` call(s) (preset: "
                         f"{', '.join(sorted({str(i.get('preset')) for i in invocations}))}).")
    lines.append("")
    return "\n".join(lines) + "\n"


def _pair_counts(data) -> str:
    from fume.data.layout import SPLITS, paired_table_name

    parts = []
    for split in SPLITS:
        path = data.paired_tables_dir / paired_table_name(split)
        if path.is_file():
            parts.append(f"{split} {len(pd.read_csv(path))}")
    return ", ".join(parts)


def _per_run_figures(experiments_dir: Path, ok: pd.DataFrame, class_names: list[str], figures_dir: Path, add_figure, per_class: int, warnings: list[str]) -> str:
    from fume.evaluation.figures import plot_confusion_matrix, plot_qualitative_grid, plot_training_curves

    text = "## Confusion matrices\n\n"
    drawn: dict[tuple[str, ...], str] = {}
    for (grid, variant), part in ok.groupby(["grid", "variant"], sort=False):
        matrices = [np.asarray(json.loads(m)) for m in part["confusion_matrix"] if isinstance(m, str) and m.startswith("[")]
        if not matrices:
            continue
        runs = tuple(sorted(part["run_dir"]))
        if runs in drawn:  # the same runs under another grid's name (e.g. FUME, the reference of every grid)
            text += f"*{part.iloc[0]['label']} ({grid}): the same runs as {drawn[runs]}, above.*\n\n"
            continue
        drawn[runs] = f"{part.iloc[0]['label']} ({grid})"
        cm = np.sum(matrices, axis=0)
        stem = figures_dir / "confusion" / f"{grid}-{variant}"
        title = f"{part.iloc[0]['label']} ({grid}, {len(matrices)} run{'s' if len(matrices) > 1 else ''} summed)"
        paths = [plot_confusion_matrix(cm, class_names, stem.with_suffix(ext), title=title) for ext in (".png", ".pdf")]
        text += add_figure(paths, f"Confusion matrix: {title}")

    text += "## Training curves\n\n"
    for run_dir, part in ok.groupby("run_dir", sort=False):
        log = experiments_dir / run_dir / "csv" / "metrics.csv"
        row = part.iloc[0]
        if not log.is_file():
            warnings.append(f"{run_dir}: no CSV training log ({log}); no training curves")
            continue
        fold = pd.to_numeric(pd.Series([row.get("fold")]), errors="coerce").iloc[0]
        which = f"seed{int(row['seed'])}" + (f"-fold{int(fold)}" if np.isfinite(fold) else "")
        stem = figures_dir / "curves" / f"{row['grid']}-{row['variant']}-{which}"
        try:
            paths = [plot_training_curves(log, stem.with_suffix(ext)) for ext in (".png", ".pdf")]
        except FumeError as err:
            warnings.append(f"{run_dir}: {err}")
            continue
        also = ", ".join(f"{g}/{v}" for g, v in zip(part["grid"], part["variant"]))
        text += add_figure(paths, f"Training curves: {also} ({which.replace('-', ', ').replace('seed', 'seed ').replace('fold', 'fold ')})")

    reference = ok[ok["is_reference"] & (ok["kind"] != "leakage")]
    reference = reference if not reference.empty else ok
    row = reference.sort_values("seed").iloc[0]
    rows_by_class = _qualitative_rows(experiments_dir / row["run_dir"], per_class)
    if rows_by_class:
        text += "## Qualitative results\n\n"
        for class_id, rows in rows_by_class.items():
            name = class_names[class_id] if class_id < len(class_names) else str(class_id)
            stem = figures_dir / "qualitative" / name.lower()
            paths = [plot_qualitative_grid(rows, class_names, stem.with_suffix(ext)) for ext in (".png", ".pdf")]
            text += add_figure(paths, f"{row['label']} on {name} test pairs: CO₂ and CH₄ input, ground truth, prediction, predicted class")
            cam = _gradcam_figure(experiments_dir / row["run_dir"], rows, class_names, figures_dir / "gradcam" / name.lower(), warnings)
            if cam:
                text += add_figure(cam, f"Where {row['label']} looks on the same {name} pairs: Grad-CAM of the predicted class on the fused "
                                        "context (one map, drawn over both frames)")
    return text


def _gradcam_figure(run_dir: Path, rows: list[dict[str, Any]], class_names: list[str], stem: Path, warnings: list[str]) -> list[Path]:
    """Grad-CAM (fume.evaluation.gradcam) of the run's checkpoint on the qualitative pairs, PNG and PDF."""
    from fume.evaluation.figures import plot_gradcam_grid
    from fume.evaluation.gradcam import gradcam_pairs
    from fume.models.checkpoint import load_model_from_checkpoint

    info = run_dir / "run_info.json"
    named = json.loads(info.read_text(encoding="utf-8")).get("checkpoint") if info.is_file() else None
    candidates = [Path(named)] if named else []
    candidates += [run_dir / "checkpoints" / n for n in ("best.ckpt", "last.ckpt")]
    checkpoint = next((c for c in candidates if c.is_file()), None)
    if checkpoint is None:
        warnings.append(f"{run_dir.name}: no checkpoint; no Grad-CAM figure")
        return []
    try:
        model, config = load_model_from_checkpoint(checkpoint)
        maps = gradcam_pairs(model, config, [(r["co2_path"], r["ch4_path"], r["sample_id"]) for r in rows])
    except (FumeError, ValueError) as err:
        warnings.append(f"{run_dir.name}: no Grad-CAM figure ({err})")
        return []
    drawn = [{**m, "true_class": r["true_class"]} for m, r in zip(maps, rows)]
    return [plot_gradcam_grid(drawn, class_names, stem.with_suffix(ext)) for ext in (".png", ".pdf")]


def _qualitative_rows(run_dir: Path, per_class: int) -> dict[int, list[dict[str, Any]]]:
    """Up to `per_class` test pairs of each class with frames, ground truth and saved predicted masks."""
    from fume.config import load_config
    from fume.data.frames import load_frame, load_mask

    predictions = run_dir / "test" / "predictions.csv"
    if per_class <= 0 or not predictions.is_file():
        return {}
    table = pd.read_csv(predictions, keep_default_na=False, na_values=[""], dtype={"sample_id": str})
    root = Path(load_config(run_dir / "config.yaml").data.dataset_root)
    out: dict[int, list[dict[str, Any]]] = {}
    for class_id, part in table.groupby("class_id", sort=True):
        rows = []
        for rec in part.head(per_class).to_dict("records"):
            pred = rec.get("pred_class_id")
            row: dict[str, Any] = {"sample_id": rec["sample_id"], "true_class": int(class_id),
                                   "pred_class": int(pred) if pred is not None and np.isfinite(pred) else "n/a"}
            for gas in ("co2", "ch4"):
                frame, mask, pred_mask = rec.get(f"{gas}_frame"), rec.get(f"{gas}_mask"), rec.get(f"{gas}_pred_mask")
                present = isinstance(frame, str) and frame != ""
                row[f"{gas}_frame"] = load_frame(root / frame) if present else None
                row[f"{gas}_path"] = root / frame if present else None
                row[f"{gas}_mask"] = load_mask(root / mask) if present and isinstance(mask, str) and mask else None
                row[f"{gas}_pred"] = load_mask(run_dir / "test" / pred_mask) if present and isinstance(pred_mask, str) and pred_mask else None
            rows.append(row)
        out[int(class_id)] = rows
    return out
