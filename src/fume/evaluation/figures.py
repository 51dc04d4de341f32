"""Figures for evaluation and reports: confusion matrix, qualitative grid, training curves.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, so no global backend change and
nothing left open). PNG by default, PDF when the path ends with .pdf. Each file is written to a
temporary name in the same folder and then moved into place, so a half-written figure never
carries the final name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from fume.contract import MASK_CLASS_NAMES
from fume.errors import DataError, FumeError
from fume.io import write_with

# background black, tube blue, gas orange; further classes (if any) get the next colours.
MASK_COLOURS = ("#000000", "#3b8ee8", "#ff8c1a", "#2ca02c", "#d62728", "#9467bd")
_GAS_LABELS = {"co2": "CO₂", "ch4": "CH₄"}
_FORMATS = {".png": "png", ".pdf": "pdf"}
_DEFAULT_CURVE_METRICS = (
    "val_miou",
    "val_balanced_accuracy",
    "val_joint_score",
    "val_macro_f1",
    "val_iou_gas",
    "val_accuracy",
)


def new_figure(figsize: tuple[float, float], **kwargs: Any) -> Figure:
    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save atomically as PNG, or PDF when the path ends with .pdf; returns the path."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FumeError(f"figure path {path} must end with .png or .pdf")
    # No creation date in PDFs: the same figure gives the same bytes.
    metadata = {"CreationDate": None} if fmt == "pdf" else None
    write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata))
    return path


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    normalize: bool = False,
    title: str | None = None,
) -> Path:
    """Confusion matrix (rows = true class) with counts and row percentages in every cell.

    Cells are shaded by count, or by row fraction (recall) when ``normalize`` is True.
    """
    counts = np.asarray(cm, dtype=float)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({k}, {k}) for classes {list(class_names)}")
    row_sums = counts.sum(1, keepdims=True)
    row_frac = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    shade = row_frac if normalize else counts

    fig = new_figure((1.6 * k + 2.0, 1.4 * k + 1.4), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shade, cmap="Blues", vmin=0, vmax=1 if normalize else max(shade.max(), 1))
    fig.colorbar(image, ax=ax, label="fraction of true class" if normalize else "count")
    threshold = (1 if normalize else max(shade.max(), 1)) / 2
    for i in range(k):
        for j in range(k):
            ax.text(
                j, i, f"{int(counts[i, j])}\n{100 * row_frac[i, j]:.1f}%",
                ha="center", va="center", color="white" if shade[i, j] > threshold else "black",
            )
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title or f"Confusion matrix (n = {int(counts.sum())})")
    return save_figure(fig, path)


def _image(value: Any, row: int, key: str) -> np.ndarray | None:
    if value is None:
        return None
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"qualitative grid row {row}: {key} has shape {array.shape}, expected (H, W)")
    return array


def _colour_mask(mask: np.ndarray, palette: np.ndarray, row: int, key: str) -> np.ndarray:
    labels = mask.astype(np.int64)
    if labels.min() < 0 or labels.max() >= len(palette):
        raise ValueError(
            f"qualitative grid row {row}: {key} holds values {labels.min()}..{labels.max()}, "
            f"expected 0..{len(palette) - 1}"
        )
    return palette[labels]


def _class_name(value: Any, class_names: Sequence[str]) -> str:
    if value is None:  # a model without a classifier (e.g. segmentation only)
        return "n/a"
    if isinstance(value, str):
        return value
    return class_names[int(value)]


def plot_qualitative_grid(
    rows: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    path: str | os.PathLike,
    seg_class_names: Sequence[str] = MASK_CLASS_NAMES,
) -> Path:
    """One row per pair: CO2 input, CO2 ground truth, CO2 prediction, then the same for CH4.

    Each row dict has co2_frame, ch4_frame ((H, W) float in [0, 1] or uint8, None if missing),
    co2_mask, ch4_mask, co2_pred, ch4_pred ((H, W) integer labels or None), true_class and
    pred_class (index into class_names, or the name), optionally sample_id. The row title gives
    the true and predicted class (green when they agree, red otherwise).
    """
    if not rows:
        raise ValueError("qualitative grid needs at least one row")
    from matplotlib.colors import to_rgb

    if len(seg_class_names) > len(MASK_COLOURS):
        raise ValueError(f"at most {len(MASK_COLOURS)} segmentation classes can be coloured, got {len(seg_class_names)}")
    palette = np.array([to_rgb(c) for c in MASK_COLOURS[: len(seg_class_names)]])
    columns = [(gas, kind) for gas in ("co2", "ch4") for kind in ("frame", "mask", "pred")]
    headers = {"frame": "input", "mask": "ground truth", "pred": "prediction"}

    fig = new_figure((2.2 * len(columns), 2.3 * len(rows) + 0.6), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(rows), 1))
    for r, (row, subfig) in enumerate(zip(rows, subfigs)):
        for key in ("true_class", "pred_class"):
            if key not in row:
                raise ValueError(f"qualitative grid row {r} has no {key!r}; keys present: {sorted(row)}")
        true_name = _class_name(row["true_class"], class_names)
        pred_name = _class_name(row["pred_class"], class_names)
        prefix = f"{row['sample_id']}: " if row.get("sample_id") else ""
        subfig.suptitle(
            f"{prefix}true {true_name}, predicted {pred_name}",
            color="tab:green" if true_name == pred_name else "tab:red",
            fontsize="medium",
        )
        arrays = {f"{gas}_{kind}": _image(row.get(f"{gas}_{kind}"), r, f"{gas}_{kind}") for gas, kind in columns}
        shape = next((a.shape for a in arrays.values() if a is not None), (1, 1))
        axes = subfig.subplots(1, len(columns))
        for ax, (gas, kind) in zip(axes, columns):
            key, label = f"{gas}_{kind}", _GAS_LABELS[gas]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label} {headers[kind]}", fontsize="small")
            array = arrays[key]
            if array is None:
                # An empty panel of the same proportions as the images of this row.
                ax.set(xlim=(0, shape[1]), ylim=(shape[0], 0), aspect="equal", facecolor="0.85")
                ax.text(0.5, 0.5, f"{label} missing", ha="center", va="center", transform=ax.transAxes)
            elif kind == "frame":
                vmax = 255 if array.dtype == np.uint8 else max(1.0, float(array.max()))
                ax.imshow(array, cmap="gray", vmin=0, vmax=vmax)
            else:
                ax.imshow(_colour_mask(array, palette, r, key), interpolation="nearest")
    handles = [Patch(facecolor=c, edgecolor="0.5", label=n) for c, n in zip(palette, seg_class_names)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return save_figure(fig, path)


def plot_training_curves(
    metrics_csv_path: str | os.PathLike,
    out_path: str | os.PathLike,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Loss and validation-metric curves per epoch from a Lightning CSVLogger ``metrics.csv``.

    CSVLogger writes one row per logging call with the other columns empty; values are collapsed
    to the last non-empty value per epoch. Left panel: every ``*loss`` column (step-level
    ``*_step`` columns are left out); right panel: ``metrics`` (default: those of val_miou,
    val_balanced_accuracy, val_joint_score, val_macro_f1, val_iou_gas, val_accuracy present).
    """
    import pandas as pd

    csv_path = Path(metrics_csv_path)
    if not csv_path.is_file():
        raise DataError(f"training log {csv_path} does not exist (expected a Lightning CSVLogger metrics.csv)")
    try:
        table = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"training log {csv_path} is not a readable CSV: {err}") from err
    if "epoch" not in table.columns:
        raise DataError(f"training log {csv_path} has no 'epoch' column; columns: {list(table.columns)}")
    per_epoch = table.dropna(subset=["epoch"]).groupby("epoch").last()  # last non-empty value per column
    loss_cols = [c for c in per_epoch.columns if c.endswith("loss") or c.endswith("loss_epoch")]
    if metrics is None:
        metric_cols = [c for c in _DEFAULT_CURVE_METRICS if c in per_epoch.columns]
    else:
        unknown = [c for c in metrics if c not in per_epoch.columns]
        if unknown:
            raise DataError(f"training log {csv_path} has no column(s) {unknown}; columns: {list(table.columns)}")
        metric_cols = list(metrics)
    loss_cols = [c for c in loss_cols if per_epoch[c].notna().any()]
    metric_cols = [c for c in metric_cols if per_epoch[c].notna().any()]
    if not loss_cols and not metric_cols:
        raise DataError(
            f"training log {csv_path} has no loss or validation metric values to plot; columns: {list(table.columns)}"
        )

    panels = [(cols, label) for cols, label in ((loss_cols, "loss"), (metric_cols, "validation metric")) if cols]
    fig = new_figure((5.0 * len(panels), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (cols, label) in zip(axes, panels):
        for col in cols:
            series = per_epoch[col].dropna()
            ax.plot(series.index.to_numpy(), series.to_numpy(), marker="o" if len(series) < 30 else None, label=col)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return save_figure(fig, out_path)


def plot_reliability(probs: np.ndarray, y_true: np.ndarray, path: str | os.PathLike, title: str = "Reliability") -> Path:
    """Reliability diagram of the top class probability (15 equal-width bins, as the ECE): accuracy
    against mean confidence per bin, the diagonal for perfect calibration, and the pairs per bin."""
    from fume.evaluation.calibration import ECE_BINS, expected_calibration_error, reliability_bins

    count, accuracy, confidence = reliability_bins(probs, y_true, ECE_BINS)
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / ECE_BINS
    fig = new_figure((4.4, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    used = count > 0
    top.bar(centres[used], accuracy[used], width=width, edgecolor="0.2", color="#3b8ee8", label="accuracy")
    top.plot(confidence[used], accuracy[used], "o", color="#ff8c1a", markersize=4, label="mean confidence")
    top.plot([0, 1], [0, 1], "--", color="0.4", label="perfect calibration")
    top.set(ylim=(0, 1), ylabel="accuracy",
            title=f"{title}\nECE {100 * expected_calibration_error(probs, y_true):.1f} % (n = {int(count.sum())})")
    top.legend(fontsize="small", loc="upper left")
    bottom.bar(centres, count, width=width, edgecolor="0.2", color="0.6")
    bottom.set(xlim=(0, 1), xlabel="top class probability", ylabel="pairs")
    return save_figure(fig, path)


def plot_gradcam_grid(rows: Sequence[dict[str, Any]], class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """One row per pair: the CO2 and the CH4 frame (8-bit display), each with the Grad-CAM map of
    the predicted class over it (row dicts: co2_frame, ch4_frame, cam (H, W) in [0, 1], true_class,
    pred_class, optionally sample_id; see fume.evaluation.gradcam)."""
    if not rows:
        raise ValueError("Grad-CAM grid needs at least one row")
    fig = new_figure((8.8, 2.4 * len(rows) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), 4))
    for r, (row, line) in enumerate(zip(rows, axes)):
        true_name, pred_name = _class_name(row.get("true_class"), class_names), _class_name(row.get("pred_class"), class_names)
        for k, gas in enumerate(("co2", "ch4")):
            frame = _image(row.get(f"{gas}_frame"), r, f"{gas}_frame")
            plain, overlaid = line[2 * k], line[2 * k + 1]
            for ax in (plain, overlaid):
                ax.set_xticks([])
                ax.set_yticks([])
            label = _GAS_LABELS[gas]
            plain.set_title(f"{label} input", fontsize="small")
            overlaid.set_title(f"{label} + Grad-CAM ({pred_name})", fontsize="small")
            if frame is None:
                for ax in (plain, overlaid):
                    ax.text(0.5, 0.5, f"{label} missing", ha="center", va="center", transform=ax.transAxes)
                    ax.set_facecolor("0.85")
                continue
            plain.imshow(frame, cmap="gray")
            overlaid.imshow(frame, cmap="gray")
            overlaid.imshow(_image(row["cam"], r, "cam"), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        line[0].set_ylabel(f"{row.get('sample_id', '')}\ntrue {true_name}", fontsize="small",
                           color="tab:green" if true_name == pred_name else "tab:red")
    return save_figure(fig, path)
