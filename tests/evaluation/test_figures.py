"""Figures are written (PNG or PDF), complete, atomically, and bad input is refused clearly."""

import numpy as np
import pytest

from fume.errors import DataError, FumeError
from fume.evaluation.figures import plot_confusion_matrix, plot_qualitative_grid, plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["Healthy", "Transitional", "Acidotic"]


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and data.rstrip().endswith(b"IEND\xaeB`\x82")


def _assert_pdf(path):
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:]


def _no_temp_files(folder):
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_confusion_matrix_png_and_pdf(tmp_path):
    cm = [[12, 1, 0], [3, 4, 1], [0, 0, 9]]
    png = plot_confusion_matrix(cm, CLASSES, tmp_path / "cm.png")
    _assert_png(png)
    pdf = plot_confusion_matrix(np.array(cm), CLASSES, tmp_path / "sub" / "cm.pdf", normalize=True)
    _assert_pdf(pdf)
    _no_temp_files(tmp_path)
    # The counts and row percentages are drawn into the PDF as text.
    assert pdf.stat().st_size > 1000


def test_confusion_matrix_rejects_bad_shape_and_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"confusion matrix has shape \(2, 2\), expected \(3, 3\)"):
        plot_confusion_matrix([[1, 0], [0, 1]], CLASSES, tmp_path / "cm.png")
    with pytest.raises(FumeError, match=r"cm.jpg must end with .png or .pdf"):
        plot_confusion_matrix(np.eye(3), CLASSES, tmp_path / "cm.jpg")
    assert list(tmp_path.iterdir()) == []


def _row(rng, true_class, pred_class, missing=None):
    h, w = 24, 32
    mask = np.zeros((h, w), np.int64)
    mask[4:20, 8:24] = 1
    mask[6:12, 12:20] = 2
    row = {
        "sample_id": f"s{true_class}{pred_class}",
        "co2_frame": rng.random((h, w), dtype=np.float32),
        "ch4_frame": (rng.random((h, w)) * 255).astype(np.uint8),
        "co2_mask": mask,
        "ch4_mask": mask,
        "co2_pred": np.roll(mask, 2, axis=1),
        "ch4_pred": mask,
        "true_class": true_class,
        "pred_class": pred_class,
    }
    if missing:
        for kind in ("frame", "mask", "pred"):
            row[f"{missing}_{kind}"] = None
    return row


def test_qualitative_grid_png_and_pdf_with_missing_gas(tmp_path):
    rng = np.random.default_rng(0)
    rows = [_row(rng, 0, 0), _row(rng, 1, 2, missing="ch4"), _row(rng, 2, 2, missing="co2")]
    rows[0]["co2_frame"] = rows[0]["co2_frame"][None]  # (1, H, W) as the dataset gives it
    _assert_png(plot_qualitative_grid(rows, CLASSES, tmp_path / "grid.png"))
    _assert_pdf(plot_qualitative_grid(rows[:1], CLASSES, tmp_path / "grid.pdf"))
    _no_temp_files(tmp_path)


def test_qualitative_grid_bad_rows(tmp_path):
    rng = np.random.default_rng(1)
    row = _row(rng, 0, 1)
    row["co2_pred"] = row["co2_pred"] + 5
    with pytest.raises(ValueError, match=r"row 0: co2_pred holds values 5..7, expected 0..2"):
        plot_qualitative_grid([row], CLASSES, tmp_path / "grid.png")
    row = _row(rng, 0, 1)
    del row["pred_class"]
    with pytest.raises(ValueError, match="row 0 has no 'pred_class'"):
        plot_qualitative_grid([row], CLASSES, tmp_path / "grid.png")
    assert not (tmp_path / "grid.png").exists()


def test_training_curves_from_nan_interleaved_csv(tmp_path):
    # CSVLogger style: train rows and validation rows interleaved, other columns empty.
    lines = ["epoch,step,train_loss_step,train_loss_epoch,val_loss,val_miou,val_balanced_accuracy"]
    for epoch in range(4):
        lines.append(f"{epoch},{epoch * 10 + 4},{1.5 - 0.2 * epoch},,,,")
        lines.append(f"{epoch},{epoch * 10 + 9},,{1.4 - 0.2 * epoch},{1.6 - 0.1 * epoch},{0.3 + 0.1 * epoch},{0.4 + 0.1 * epoch}")
    csv = tmp_path / "metrics.csv"
    csv.write_text("\n".join(lines) + "\n")
    _assert_png(plot_training_curves(csv, tmp_path / "curves.png"))
    _assert_pdf(plot_training_curves(csv, tmp_path / "curves.pdf", metrics=["val_miou"]))
    _no_temp_files(tmp_path)


def test_training_curves_errors(tmp_path):
    with pytest.raises(DataError, match=r"training log .*nope.csv does not exist"):
        plot_training_curves(tmp_path / "nope.csv", tmp_path / "c.png")
    csv = tmp_path / "metrics.csv"
    csv.write_text("step,train_loss\n1,0.5\n")
    with pytest.raises(DataError, match=r"has no 'epoch' column; columns: \['step', 'train_loss'\]"):
        plot_training_curves(csv, tmp_path / "c.png")
    csv.write_text("epoch,step,train_loss\n0,1,0.5\n")
    with pytest.raises(DataError, match=r"has no column\(s\) \['val_miou'\]"):
        plot_training_curves(csv, tmp_path / "c.png", metrics=["val_miou"])
