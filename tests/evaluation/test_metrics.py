"""Metrics checked against scikit-learn and a brute-force boundary computation."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix, f1_score, jaccard_score

from fume.evaluation.boundary import hd95_asd
from fume.evaluation.metrics import ClassificationMetrics, SegmentationMetrics, joint_score, upsample_labels

LABELS = [0, 1, 2]
NAMES = ["background", "tube", "gas"]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes missing from y_true / y_pred
        return fn(*args, **kwargs)


def _seg_reference(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """sklearn scores over the pixels; a class in neither array is left out (sklearn's default labels)."""
    present = sorted(set(np.unique(y_true)) | set(np.unique(y_pred)))
    iou = _quiet(jaccard_score, y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    dice = _quiet(f1_score, y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    ref = {
        "miou": _quiet(jaccard_score, y_true, y_pred, average="macro"),
        "dice": _quiet(f1_score, y_true, y_pred, average="macro"),
        "pixel_accuracy": accuracy_score(y_true, y_pred),
    }
    for c, name in enumerate(NAMES):
        ref[f"iou_{name}"] = iou[c] if c in present else math.nan
        ref[f"dice_{name}"] = dice[c] if c in present else math.nan
    return ref


def _assert_close(got: dict, ref: dict, prefix: str = "") -> None:
    for key, value in ref.items():
        if math.isnan(value):
            assert math.isnan(got[prefix + key]), prefix + key
        else:
            assert got[prefix + key] == pytest.approx(value, rel=1e-9, abs=1e-12), prefix + key


def test_segmentation_matches_sklearn_per_gas_and_combined():
    rng = np.random.default_rng(0)
    co2_t = rng.integers(0, 3, size=(3, 12, 10))
    co2_p = np.where(rng.random(co2_t.shape) < 0.7, co2_t, rng.integers(0, 3, size=co2_t.shape))
    ch4_t = rng.integers(0, 2, size=(2, 12, 10))  # no gas pixel in the CH4 targets...
    ch4_p = np.where(rng.random(ch4_t.shape) < 0.6, ch4_t, 0)  # ...nor in its predictions
    metric = SegmentationMetrics(boundary=False)
    for i in range(3):  # several updates, mixed batch sizes
        metric.update(torch.from_numpy(co2_p[i : i + 1]), torch.from_numpy(co2_t[i : i + 1]), "co2")
    metric.update(torch.from_numpy(ch4_p), torch.from_numpy(ch4_t), "ch4")
    got = metric.compute()
    _assert_close(got, _seg_reference(co2_t.ravel(), co2_p.ravel()), "co2_")
    _assert_close(got, _seg_reference(ch4_t.ravel(), ch4_p.ravel()), "ch4_")
    assert math.isnan(got["ch4_iou_gas"])
    both_t = np.concatenate([co2_t.ravel(), ch4_t.ravel()])
    both_p = np.concatenate([co2_p.ravel(), ch4_p.ravel()])
    _assert_close(got, _seg_reference(both_t, both_p))
    assert "hd95_gas" not in got


def test_segmentation_class_predicted_but_absent_from_target():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    preds = target.clone()
    preds[0, 0, :2] = 2  # gas predicted, never true: IoU 0, counted in the mean
    metric = SegmentationMetrics(boundary=False)
    metric.update(preds, target, "co2")
    got = metric.compute()
    _assert_close(got, _seg_reference(target.numpy().ravel(), preds.numpy().ravel()))
    assert got["iou_gas"] == 0.0 and math.isnan(got["iou_tube"])
    assert got["miou"] == pytest.approx((14 / 16 + 0.0) / 2)


def test_segmentation_accepts_logits_and_present_mask():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (3, 8, 8), generator=g)
    with_mask = SegmentationMetrics(boundary=False)
    with_mask.update(logits, target, "ch4", present=torch.tensor([1.0, 0.0, 1.0]))
    by_hand = SegmentationMetrics(boundary=False)
    by_hand.update(logits.argmax(1)[[0, 2]], target[[0, 2]], "ch4")
    assert with_mask.ch4_confmat.tolist() == by_hand.ch4_confmat.tolist()
    assert int(with_mask.ch4_confmat.sum()) == 2 * 64


def test_segmentation_boundary_average_and_skips():
    rng = np.random.default_rng(5)
    target = np.zeros((4, 16, 16), dtype=np.int64)
    preds = np.zeros_like(target)
    target[0, 3:9, 4:12] = 2
    preds[0, 4:10, 5:12] = 2
    target[1, 2:6, 2:6] = 2
    preds[1, 8:14, 9:15] = 2
    preds[1][rng.random((16, 16)) < 0.1] = 2
    target[2, 5:9, 5:9] = 2  # a missed plume: penalised with the diagonal
    preds[3, 1:3, 1:3] = 1  # no gas anywhere: excluded
    metric = SegmentationMetrics()
    metric.update(torch.from_numpy(preds[:2]), torch.from_numpy(target[:2]), "co2")
    metric.update(torch.from_numpy(preds[2:]), torch.from_numpy(target[2:]), "ch4")
    got = metric.compute()
    per_image = [hd95_asd(preds[i] == 2, target[i] == 2) for i in range(2)]
    diagonal = math.hypot(16, 16)
    assert got["co2_hd95_gas"] == pytest.approx(np.mean([v[0] for v in per_image]), rel=1e-9)
    assert got["co2_asd_gas"] == pytest.approx(np.mean([v[1] for v in per_image]), rel=1e-9)
    # The missed plume counts with the worst case, so it can only raise the mean.
    assert got["hd95_gas"] == pytest.approx((per_image[0][0] + per_image[1][0] + diagonal) / 3, rel=1e-9)
    assert got["asd_gas"] == pytest.approx((per_image[0][1] + per_image[1][1] + diagonal) / 3, rel=1e-9)
    assert got["ch4_hd95_gas"] == got["ch4_asd_gas"] == pytest.approx(diagonal)
    assert (got["boundary_images"], got["boundary_penalised"], got["boundary_excluded"]) == (3, 1, 1)
    assert (got["ch4_boundary_images"], got["ch4_boundary_penalised"], got["ch4_boundary_excluded"]) == (1, 1, 1)


def test_segmentation_bad_input_messages():
    metric = SegmentationMetrics()
    with pytest.raises(ValueError, match=r"co2 predictions have shape \(1, 4, 4\) and targets \(1, 4, 5\)"):
        metric.update(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 5, dtype=torch.long), "co2")
    with pytest.raises(ValueError, match=r"ch4 targets holds values in \[0, 3\], expected 0..2"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 3], [1, 2]]]), "ch4")
    with pytest.raises(ValueError, match="gas must be one of"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), "n2o")


@pytest.mark.parametrize("seed", range(4))
def test_classification_matches_sklearn_with_a_class_absent_from_targets(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.choice([0, 2], size=23)  # Transitional never true
    logits = rng.normal(size=(23, 3))
    y_pred = logits.argmax(1)
    metric = ClassificationMetrics()
    metric.update(torch.from_numpy(logits[:10]), torch.from_numpy(y_true[:10]))
    metric.update(torch.softmax(torch.from_numpy(logits[10:]), 1), torch.from_numpy(y_true[10:]))
    got = metric.compute()
    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert got["balanced_accuracy"] == pytest.approx(_quiet(balanced_accuracy_score, y_true, y_pred))
    assert got["macro_f1"] == pytest.approx(_quiet(f1_score, y_true, y_pred, average="macro"))
    assert got["weighted_f1"] == pytest.approx(_quiet(f1_score, y_true, y_pred, average="weighted"))
    assert got["cohens_kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred))
    per_class = _quiet(f1_score, y_true, y_pred, labels=LABELS, average=None)
    assert [got["f1_healthy"], got["f1_transitional"], got["f1_acidotic"]] == pytest.approx(per_class)
    assert got["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=LABELS).tolist()
    assert got["num_samples"] == 23


def test_classification_class_in_neither_targets_nor_predictions():
    y_true = np.array([0, 0, 2, 2, 2, 0])
    y_pred = np.array([0, 2, 2, 2, 0, 0])
    metric = ClassificationMetrics(class_names=["Healthy", "Transitional", "Acidotic"])
    metric.update(torch.from_numpy(y_pred), torch.from_numpy(y_true))  # plain labels work too
    got = metric.compute()
    assert math.isnan(got["f1_transitional"])
    assert got["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert got["cohens_kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred))


def test_states_merge_like_ddp_sync():
    # DDP sync reduces each state with its dist_reduce_fx; merge_state applies the same reduction.
    rng = np.random.default_rng(7)
    logits, y = torch.from_numpy(rng.normal(size=(20, 3))), torch.from_numpy(rng.integers(0, 3, 20))
    whole, a, b = ClassificationMetrics(), ClassificationMetrics(), ClassificationMetrics()
    whole.update(logits, y)
    a.update(logits[:7], y[:7])
    b.update(logits[7:], y[7:])
    a.merge_state(b)
    assert a.compute() == whole.compute()
    preds, target = torch.from_numpy(rng.integers(0, 3, (4, 8, 8))), torch.from_numpy(rng.integers(0, 3, (4, 8, 8)))
    whole, a, b = SegmentationMetrics(), SegmentationMetrics(), SegmentationMetrics()
    whole.update(preds, target, "co2")
    a.update(preds[:1], target[:1], "co2")
    b.update(preds[1:], target[1:], "co2")
    a.merge_state(b)
    assert a.compute() == pytest.approx(whole.compute(), nan_ok=True)


def test_joint_score_and_upsample_labels():
    assert joint_score(0.8, 0.6) == pytest.approx(0.7)
    assert joint_score(0.8, 0.6, weight=0.25) == pytest.approx(0.25 * 0.8 + 0.75 * 0.6)
    with pytest.raises(ValueError, match=r"weight must be in \[0, 1\]"):
        joint_score(0.8, 0.6, weight=1.5)
    labels = torch.tensor([[0, 1], [2, 1]])
    up = upsample_labels(labels, (4, 6))
    expected = np.kron(labels.numpy(), np.ones((2, 3), dtype=np.int64))
    assert up.dtype == labels.dtype and up.tolist() == expected.tolist()
    assert upsample_labels(labels[None], (2, 2)).shape == (1, 2, 2)
