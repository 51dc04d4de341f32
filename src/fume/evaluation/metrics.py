"""Segmentation and classification metrics as torchmetrics Metrics (their states sync under DDP).

Both metrics accumulate a confusion matrix (rows = true class, columns = predicted class) and
derive every score from it in ``compute()``, which returns a flat dict of Python numbers ready for
``metrics.json``.

Undefined values: a class that appears in neither the targets nor the predictions has no IoU,
Dice or F1 (NaN) and is left out of the means; balanced accuracy averages the recall of the
classes present in the targets. This is what scikit-learn does with its default ``labels``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from fume.contract import GASES, MASK_CLASS_NAMES, key_name
from fume.evaluation.boundary import EXCLUDED, PENALISED, boundary_scores

CLASS_NAMES = ("Healthy", "Transitional", "Acidotic")
# Keys every metrics.json of `fume evaluate` carries (null when the model lacks the task or the value is undefined).
METRIC_KEYS = [
    "miou", "dice", "pixel_accuracy", "iou_background", "iou_tube", "iou_gas", "co2_miou", "ch4_miou",
    "hd95_gas", "asd_gas", "boundary_penalised", "boundary_excluded", "num_frames_co2", "num_frames_ch4",
    "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "cohens_kappa",
    "f1_healthy", "f1_transitional", "f1_acidotic", "confusion_matrix", "off_by_two_rate", "ece", "brier",
    "recording_balanced_accuracy", "joint_score", "num_samples",
]


def joint_score(miou: float, balanced_accuracy: float, weight: float = 0.5) -> float:
    """weight x mIoU + (1 - weight) x balanced accuracy (0.5 / 0.5 by default)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"joint score weight must be in [0, 1], got {weight}")
    return float(weight * miou + (1.0 - weight) * balanced_accuracy)


def upsample_labels(labels: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Resize integer label maps (B, H, W) or (H, W) to out_hw = (height, width), nearest neighbour."""
    squeeze = labels.dim() == 2
    x = labels[None] if squeeze else labels
    if tuple(x.shape[-2:]) != tuple(out_hw):
        x = F.interpolate(x[:, None].float(), size=tuple(out_hw), mode="nearest-exact")[:, 0].to(labels.dtype)
    return x[0] if squeeze else x


def _confmat(preds: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Confusion matrix of labels already checked to lie in 0..num_classes-1."""
    # uint8 indices make CPU bincount much faster than int64 (measured ~20x on a 640x480 frame).
    small = num_classes * num_classes <= 256 and target.device.type == "cpu"
    dtype = torch.uint8 if small else torch.long
    idx = target.reshape(-1).to(dtype) * num_classes + preds.reshape(-1).to(dtype)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _check_labels(values: Tensor, num_classes: int, what: str) -> None:
    if not values.numel():
        return
    low, high = (int(v) for v in torch.aminmax(values))
    if low < 0 or high >= num_classes:
        raise ValueError(f"{what} holds values in [{low}, {high}], expected 0..{num_classes - 1}")


def _nanmean(values: Tensor) -> float:
    return float(torch.nanmean(values)) if values.numel() else float("nan")


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den, NaN where den == 0."""
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(num, float("nan")))


class SegmentationMetrics(Metric):
    """Per-gas and combined IoU, mIoU, Dice and pixel accuracy; HD95 / ASD of the gas class.

    update(preds, target, gas, present=None): preds (B, H, W) integer labels or (B, C, H, W)
    logits, target (B, H, W), gas "co2" or "ch4"; ``present`` (B,) (e.g. a column of
    ``modality_mask``) keeps only the samples whose gas frame exists.

    compute() keys, for prefix "co2_", "ch4_" and "" (both gases pooled): miou, dice (mean of
    the per-class Dice), pixel_accuracy, iou_<class>, dice_<class> (class names background, tube,
    gas). With ``boundary=True``: hd95_<gas class> and asd_<gas class> (e.g. hd95_gas, asd_gas)
    per gas and combined, in pixels, averaged over the images (see fume.evaluation.boundary for the
    convention): an image where exactly one of prediction and ground truth has no gas counts with
    the image diagonal (boundary_penalised), one where neither has gas is left out
    (boundary_excluded); boundary_images counts the images averaged (penalised ones included).
    HD95 / ASD are NaN when no image was averaged.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        num_classes: int = 3,
        class_names: Sequence[str] = MASK_CLASS_NAMES,
        gas_class: int = 2,
        boundary: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes: {list(class_names)}")
        if not 0 <= gas_class < num_classes:
            raise ValueError(f"gas_class {gas_class} is not a class index 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.class_names = [key_name(n) for n in class_names]
        self.gas_class = gas_class
        self.boundary = boundary
        for gas in GASES:
            self.add_state(f"{gas}_confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), "sum")
        # Per gas (rows co2, ch4): summed HD95 and ASD; images averaged, penalised, excluded.
        self.add_state("boundary_sums", torch.zeros(2, 2, dtype=torch.float64), "sum")
        self.add_state("boundary_counts", torch.zeros(2, 3, dtype=torch.long), "sum")

    def update(self, preds: Tensor, target: Tensor, gas: str, present: Tensor | None = None) -> None:
        if gas not in GASES:
            raise ValueError(f"gas must be one of {list(GASES)}, got {gas!r}")
        from_logits = preds.dim() == target.dim() + 1 and preds.is_floating_point()
        if from_logits:
            preds = preds.argmax(1)
        if target.dim() == 2:
            preds, target = preds.reshape((1, *preds.shape)), target[None]
        if preds.shape != target.shape or target.dim() != 3:
            raise ValueError(
                f"{gas} predictions have shape {tuple(preds.shape)} and targets {tuple(target.shape)}; expected "
                "equal shapes (B, H, W) (upsample the predictions to the mask's resolution first)"
            )
        if present is not None:
            keep = present.reshape(-1).to(target.device) > 0.5
            preds, target = preds[keep], target[keep]
        if not from_logits:  # an argmax is always in range
            _check_labels(preds, self.num_classes, f"{gas} predictions")
        _check_labels(target, self.num_classes, f"{gas} targets")
        confmat = getattr(self, f"{gas}_confmat")
        confmat += _confmat(preds, target, self.num_classes).to(confmat.device)
        if self.boundary:
            self._update_boundary(preds, target, GASES.index(gas))

    def _update_boundary(self, preds: Tensor, target: Tensor, row: int) -> None:
        pred_gas = (preds == self.gas_class).cpu().numpy()
        true_gas = (target == self.gas_class).cpu().numpy()
        sums, counts = np.zeros(2), np.zeros(3, np.int64)  # averaged, penalised, excluded
        for p, t in zip(pred_gas, true_gas):
            scores, outcome = boundary_scores(p, t)
            if outcome == EXCLUDED:
                counts[2] += 1
                continue
            sums += scores
            counts[0] += 1
            counts[1] += outcome == PENALISED
        self.boundary_sums[row] += torch.as_tensor(sums, dtype=torch.float64, device=self.boundary_sums.device)
        self.boundary_counts[row] += torch.as_tensor(counts, device=self.boundary_counts.device)

    def _scores(self, confmat: Tensor, prefix: str) -> dict[str, float]:
        cm = confmat.double().cpu()
        tp = cm.diag()
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
        iou = _safe_div(tp, tp + fp + fn)
        dice = _safe_div(2 * tp, 2 * tp + fp + fn)
        out = {
            f"{prefix}miou": _nanmean(iou),
            f"{prefix}dice": _nanmean(dice),
            f"{prefix}pixel_accuracy": float(_safe_div(tp.sum(), cm.sum())),
        }
        for name, i, d in zip(self.class_names, iou.tolist(), dice.tolist()):
            out[f"{prefix}iou_{name}"] = i
            out[f"{prefix}dice_{name}"] = d
        return out

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        out.update(self._scores(self.co2_confmat + self.ch4_confmat, ""))
        for gas in GASES:
            out.update(self._scores(getattr(self, f"{gas}_confmat"), f"{gas}_"))
        if self.boundary:
            gas_name = self.class_names[self.gas_class]
            sums, counts = self.boundary_sums.double().cpu(), self.boundary_counts.cpu()
            scopes = [("", sums.sum(0), counts.sum(0))]
            scopes += [(f"{gas}_", sums[i], counts[i]) for i, gas in enumerate(GASES)]
            for prefix, total, count in scopes:
                n = int(count[0])
                out[f"{prefix}hd95_{gas_name}"] = float(total[0] / n) if n else float("nan")
                out[f"{prefix}asd_{gas_name}"] = float(total[1] / n) if n else float("nan")
                out[f"{prefix}boundary_images"] = n
                out[f"{prefix}boundary_penalised"] = int(count[1])
                out[f"{prefix}boundary_excluded"] = int(count[2])
        return out


class ClassificationMetrics(Metric):
    """Accuracy, balanced accuracy, macro / weighted / per-class F1, Cohen's kappa, confusion matrix.

    update(preds, target): preds (B, C) logits or probabilities (argmax taken) or (B,) labels;
    target (B,). compute() keys: accuracy, balanced_accuracy, macro_f1, weighted_f1,
    f1_<class> (e.g. f1_healthy), cohens_kappa, confusion_matrix (list of lists, rows = true
    class, columns = predicted), num_samples. Conventions match scikit-learn's defaults.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int = 3, class_names: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        names = list(class_names) if class_names is not None else list(CLASS_NAMES[:num_classes])
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names given for {num_classes} classes: {names}")
        self.num_classes = num_classes
        self.class_names = [key_name(n) for n in names]
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), "sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        target = target.reshape(-1)
        if preds.dim() == 2:
            if preds.shape[1] != self.num_classes:
                raise ValueError(f"class scores have shape {tuple(preds.shape)}, expected (B, {self.num_classes})")
            preds = preds.argmax(1)
        if preds.shape != target.shape:
            raise ValueError(f"predictions of shape {tuple(preds.shape)} do not match targets {tuple(target.shape)}")
        _check_labels(preds, self.num_classes, "predicted classes")
        _check_labels(target, self.num_classes, "class targets")
        self.confmat += _confmat(preds, target, self.num_classes).to(self.confmat.device)

    def compute(self) -> dict[str, float | int | list[list[int]]]:
        cm = self.confmat.double().cpu()
        n = cm.sum()
        tp, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
        recall = _safe_div(tp, support)
        f1 = _safe_div(2 * tp, support + predicted)
        expected_agreement = float(_safe_div((support * predicted).sum(), n * n))
        accuracy = float(_safe_div(tp.sum(), n))
        out: dict[str, float | int | list[list[int]]] = {
            "accuracy": accuracy,
            "balanced_accuracy": _nanmean(recall),
            "macro_f1": _nanmean(f1),
            "weighted_f1": float(_safe_div((torch.nan_to_num(f1) * support).sum(), n)),
            "cohens_kappa": (accuracy - expected_agreement) / (1 - expected_agreement)
            if expected_agreement < 1
            else float("nan"),
        }
        for name, value in zip(self.class_names, f1.tolist()):
            out[f"f1_{name}"] = value
        out["confusion_matrix"] = self.confmat.cpu().tolist()
        out["num_samples"] = int(n)
        return out
