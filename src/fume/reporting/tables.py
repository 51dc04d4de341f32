"""Report tables: mean +- std over seeds, written as Markdown, CSV (numbers) and LaTeX (booktabs).

A table is built as a `Table`: a numeric frame (what the CSV holds: a `<column> mean` and
`<column> std` pair per value column) and the same table as display strings (Markdown, LaTeX).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fume.io import write_text
from fume.reporting.stats import Interval, mean_std

PM = "±"


@dataclass(frozen=True)
class Column:
    """A value column: header, results.csv key, scale (100 for percentages) and decimals."""

    header: str
    key: str
    scale: float = 100.0
    digits: int = 1


EFFICIENCY_COLUMNS = [
    Column("Accuracy (%)", "accuracy"),
    Column("Bal. acc. (%)", "balanced_accuracy"),
    Column("mIoU (%)", "miou"),
    Column("Dice (%)", "dice"),
    Column("Gas IoU (%)", "iou_gas"),
    Column("HD95 (px)", "hd95_gas", 1.0, 1),
    Column("ASD (px)", "asd_gas", 1.0, 1),
    Column("Penalised", "boundary_penalised", 1.0, 0),
    Column("Excluded", "boundary_excluded", 1.0, 0),
    Column("Rec. bal. acc. (%)", "recording_balanced_accuracy"),
    Column("Off-by-two (%)", "off_by_two_rate"),
    Column("ECE (%)", "ece"),
    Column("ECE at T=1 (%)", "ece_uncalibrated"),
    Column("Params (M)", "params", 1e-6, 2),
    Column("GMACs", "gmacs", 1.0, 2),
    Column("CPU latency (ms)", "latency_ms", 1.0, 1),
    Column("CPU FPS", "fps", 1.0, 1),
]
F1_COLUMNS = [
    Column("F1 Healthy (%)", "f1_healthy"),
    Column("F1 Transitional (%)", "f1_transitional"),
    Column("F1 Acidotic (%)", "f1_acidotic"),
    Column("Macro F1 (%)", "macro_f1"),
    Column("Bal. acc. (%)", "balanced_accuracy"),
    Column("Kappa", "cohens_kappa", 1.0, 3),
]
ABLATION_COLUMNS = [
    Column("Accuracy (%)", "accuracy"),
    Column("Bal. acc. (%)", "balanced_accuracy"),
    Column("Macro F1 (%)", "macro_f1"),
    Column("mIoU (%)", "miou"),
    Column("Dice (%)", "dice"),
]
LEAKAGE_COLUMNS = [
    Column("Accuracy (%)", "accuracy"),
    Column("Bal. acc. (%)", "balanced_accuracy"),
    Column("Macro F1 (%)", "macro_f1"),
    Column("F1 Transitional (%)", "f1_transitional"),
    Column("mIoU (%)", "miou"),
    Column("Dice (%)", "dice"),
    Column("Gas IoU (%)", "iou_gas"),
]


@dataclass
class Table:
    title: str
    numeric: pd.DataFrame
    display: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def format_value(mean: float, std: float, n: int, column: Column) -> str:
    """'80.9 ± 1.2' (std over n > 1 seeds), '80.9' for one seed, 'n/a' for none."""
    if n == 0 or not np.isfinite(mean):
        return "n/a"
    text = f"{mean * column.scale:.{column.digits}f}"
    return f"{text} {PM} {std * column.scale:.{column.digits}f}" if n > 1 else text


def format_interval(interval: Interval | None, scale: float = 100.0, digits: int = 1, significant: bool | None = None) -> str:
    """'+1.2 [-0.4, +2.9]*' (percentage points; * when `significant`, by default when the 95 %
    interval excludes 0)."""
    if interval is None or not np.isfinite(interval.difference):
        return "n/a"
    d, lo, hi = (v * scale for v in (interval.difference, interval.low, interval.high))
    mark = interval.significant if significant is None else significant
    return f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]" + ("*" if mark else "")


def _numbers(series: pd.Series) -> list[float]:
    return [float(v) for v in pd.to_numeric(series, errors="coerce")]


def summary_table(
    title: str, runs: pd.DataFrame, columns: Sequence[Column], label_columns: Sequence[tuple[str, str]],
    by: Sequence[str] = ("grid", "variant"), delta_against: pd.DataFrame | None = None, delta_keys: Sequence[Column] = (),
) -> Table:
    """One row per `by` group of `runs` (in order of first appearance): the label columns
    (header, results key), then mean +- std over the group's seeds of each value column, then
    (with `delta_against`, the reference's runs) the change of the means against the reference."""
    numeric_rows, display_rows = [], []
    groups = runs.groupby(list(by), sort=False)
    reference_means = {c.key: mean_std(_numbers(delta_against[c.key]))[0] for c in delta_keys} if delta_against is not None else {}
    for _, part in groups:
        first = part.iloc[0]
        num: dict[str, object] = {header: first[key] for header, key in label_columns}
        disp: dict[str, object] = dict(num)
        seeds = len(part)
        num["Seeds"] = disp["Seeds"] = seeds
        for c in columns:
            mean, std, n = mean_std(_numbers(part[c.key])) if c.key in part else (float("nan"), float("nan"), 0)
            num[f"{c.header} mean"] = mean * c.scale if n else np.nan
            num[f"{c.header} std"] = std * c.scale if n > 1 else np.nan
            disp[c.header] = format_value(mean, std, n, c)
        for c in delta_keys:
            mean = mean_std(_numbers(part[c.key]))[0]
            delta = (mean - reference_means[c.key]) * c.scale
            header = f"Δ {c.header}"
            num[header] = delta if np.isfinite(delta) else np.nan
            disp[header] = f"{delta:+.{c.digits}f}" if np.isfinite(delta) else "n/a"
        numeric_rows.append(num)
        display_rows.append(disp)
    return Table(title, pd.DataFrame(numeric_rows), pd.DataFrame(display_rows))


# ------------------------------------------------------------------ writers


def to_markdown(display: pd.DataFrame) -> str:
    header = [str(c) for c in display.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for row in display.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    escaped = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return escaped.replace(PM, r"$\pm$").replace("Δ", r"$\Delta$").replace("₂", "$_2$").replace("₄", "$_4$")


def to_latex(display: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs table (needs \\usepackage{booktabs}); first column left-aligned, the rest right."""
    spec = "l" + "r" * (len(display.columns) - 1)
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(latex_escape(c) for c in display.columns) + r" \\", r"\midrule"]
    for row in display.itertuples(index=False):
        lines.append(" & ".join(latex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(table: Table, stem: str | Path) -> dict[str, Path]:
    """stem.md, stem.csv (numbers), stem.tex; returns the paths by format."""
    stem = Path(stem)
    paths = {"md": stem.with_suffix(".md"), "csv": stem.with_suffix(".csv"), "tex": stem.with_suffix(".tex")}
    notes = "".join(f"\n{n}\n" for n in table.notes)
    write_text(paths["md"], f"**{table.title}**\n\n" + to_markdown(table.display) + notes)
    write_text(paths["csv"], table.numeric.to_csv(index=False))
    write_text(paths["tex"], to_latex(table.display, table.title, f"tab:{stem.name}"))
    return paths
