"""Figures of the experiment report: mIoU bars, per-class F1 radar, ablation Dice bars and the
efficiency scatter (GMACs vs mIoU). Each is written as PNG and PDF with the evaluation figures'
atomic saver (matplotlib object API on Agg; no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fume.evaluation.figures import new_figure, save_figure

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]


def save_both(fig, stem: str | Path) -> list[Path]:
    """stem.png and stem.pdf."""
    stem = Path(stem)
    return [save_figure(fig, stem.with_suffix(".png")), save_figure(fig, stem.with_suffix(".pdf"))]


def bar_chart(
    labels: Sequence[str], means: Sequence[float], stds: Sequence[float], ylabel: str, title: str, stem: str | Path,
    highlight: int | None = 0, colours: Sequence[str] | None = None,
) -> list[Path]:
    """Vertical bars with std error bars (none for a single seed) and the value above each bar;
    bar `highlight` (the reference) is drawn darker."""
    means, stds = np.asarray(means, float), np.nan_to_num(np.asarray(stds, float))
    fig = new_figure((max(4.0, 0.9 * len(labels) + 1.5), 3.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    colours = list(colours) if colours is not None else [PALETTE[0]] * len(labels)
    if highlight is not None and colours is not None:
        colours[highlight] = "#1f3d6b"
    ax.bar(x, np.nan_to_num(means), yerr=stds, color=colours, capsize=3, edgecolor="0.3", linewidth=0.5)
    for xi, m in zip(x, means):
        ax.text(xi, (m if np.isfinite(m) else 0) + 0.01 * max(1, np.nanmax(means) if np.isfinite(means).any() else 1),
                f"{m:.1f}" if np.isfinite(m) else "n/a", ha="center", va="bottom", fontsize="small")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    top = np.nanmax(means + stds) if np.isfinite(means).any() else 1.0
    ax.set_ylim(0, max(1.0, top * 1.15))
    ax.grid(axis="y", alpha=0.3)
    return save_both(fig, stem)


def grouped_bars(
    groups: Sequence[str], labels: Sequence[str], means: Sequence[float], stds: Sequence[float], reference: float,
    reference_label: str, ylabel: str, title: str, stem: str | Path,
) -> list[Path]:
    """Bars coloured by group (ablation groups), with a dashed line at the reference's value."""
    order = list(dict.fromkeys(groups))
    colours = [PALETTE[order.index(g) % len(PALETTE)] for g in groups]
    means, stds = np.asarray(means, float), np.nan_to_num(np.asarray(stds, float))
    fig = new_figure((max(5.0, 0.55 * len(labels) + 2.0), 4.0), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    ax.bar(x, np.nan_to_num(means), yerr=stds, color=colours, capsize=3, edgecolor="0.3", linewidth=0.5)
    if np.isfinite(reference):
        ax.axhline(reference, color="k", linestyle="--", linewidth=1, label=f"{reference_label} ({reference:.1f})")
    ax.set_xticks(x, labels, rotation=40, ha="right", fontsize="small")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    from matplotlib.patches import Patch

    handles = [Patch(color=PALETTE[i % len(PALETTE)], label=g) for i, g in enumerate(order)]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize="small", ncols=2, loc="best")
    finite = means[np.isfinite(means)]
    ax.set_ylim(0, max(1.0, (finite + stds[np.isfinite(means)]).max() * 1.12 if finite.size else 1.0))
    ax.grid(axis="y", alpha=0.3)
    return save_both(fig, stem)


def radar_chart(axes_labels: Sequence[str], series: dict[str, Sequence[float]], title: str, stem: str | Path) -> list[Path]:
    """One closed polygon per model over the axes (values 0..100)."""
    k = len(axes_labels)
    angles = np.linspace(0, 2 * np.pi, k, endpoint=False)
    closed = np.concatenate([angles, angles[:1]])
    fig = new_figure((6.0, 5.2), layout="constrained")
    ax = fig.add_subplot(projection="polar")
    for i, (name, values) in enumerate(series.items()):
        v = np.nan_to_num(np.asarray(values, float))
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(closed, np.concatenate([v, v[:1]]), color=colour, linewidth=2 if i == 0 else 1.2, label=name)
        ax.fill(closed, np.concatenate([v, v[:1]]), color=colour, alpha=0.08)
    ax.set_xticks(angles, axes_labels, fontsize="small")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize="small")
    return save_both(fig, stem)


def efficiency_scatter(
    labels: Sequence[str], gmacs: Sequence[float], miou: Sequence[float], params_m: Sequence[float], title: str, stem: str | Path,
    size_label: str = "GMACs per pair",
) -> list[Path]:
    """GMACs (x) vs mIoU (y); marker area grows with the parameter count; each point labelled."""
    x, y, p = (np.asarray(v, float) for v in (gmacs, miou, params_m))
    fig = new_figure((6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    keep = np.isfinite(x) & np.isfinite(y)
    sizes = 40 + 120 * np.nan_to_num(p) / max(np.nanmax(p) if np.isfinite(p).any() else 1, 1e-9)
    for i in np.flatnonzero(keep):
        ax.scatter(x[i], y[i], s=sizes[i], color=PALETTE[i % len(PALETTE)], edgecolor="0.2", linewidth=0.5, zorder=3)
        ax.annotate(f"{labels[i]} ({p[i]:.2f} M)", (x[i], y[i]), textcoords="offset points", xytext=(5, 4), fontsize="x-small")
    ax.set_xlabel(size_label)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_both(fig, stem)
