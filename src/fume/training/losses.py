"""Losses for FUME: focal, soft Dice, focal + Dice, (weighted) cross-entropy and the multi-task loss.

Every loss takes raw logits, (B, C) for classification or (B, C, H, W) for segmentation, and integer
targets, (B,) or (B, H, W). Besides the usual reductions each loss has ``per_sample(logits, target)``
returning one value per sample, (B,), which is what :class:`MultiTaskLoss` needs to leave out the
samples whose gas frame is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fume.contract import CLS_OUTPUT, GASES, SEG_OUTPUTS
from fume.errors import ConfigError

LOSS_NAMES = ("focal", "focal_dice", "dice", "ce", "weighted_ce")
_REDUCTIONS = ("mean", "sum", "none", "per_sample")


def _as_weight(values: Sequence[float] | Tensor | None, what: str) -> Tensor | None:
    if values is None:
        return None
    weight = torch.as_tensor(values, dtype=torch.float32).flatten()
    if weight.numel() == 0 or bool((weight < 0).any()) or not bool(torch.isfinite(weight).all()):
        raise ConfigError(f"{what} must be a non-empty list of finite non-negative numbers, got {values!r}")
    return weight


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ConfigError(f"loss reduction {reduction!r} is not one of {list(_REDUCTIONS)}")
    return reduction


def _check_weight_size(weight: Tensor | None, logits: Tensor, what: str) -> None:
    if weight is not None and weight.numel() != logits.shape[1]:
        raise ValueError(
            f"{what} has {weight.numel()} entries but the logits have {logits.shape[1]} classes "
            f"(shape {tuple(logits.shape)})"
        )


def _reduce_elementwise(loss: Tensor, reduction: str) -> Tensor:
    """Reduce a per-element loss of shape (B,) or (B, H, W)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "per_sample":
        return loss.flatten(1).mean(1) if loss.dim() > 1 else loss
    return loss.mean()


class FocalLoss(nn.Module):
    """Multi-class focal loss, FL = -alpha[y] * (1 - p_y)^gamma * log p_y (Lin et al. 2017).

    ``alpha`` holds one weight per class (None = all 1). With gamma = 0 and no alpha this is plain
    cross-entropy. ``mean`` is the plain mean over all elements (samples, and pixels for
    segmentation), not divided by the alpha weights.
    """

    def __init__(
        self,
        alpha: Sequence[float] | Tensor | None = None,
        gamma: float = 2.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"focal loss gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.reduction = _check_reduction(reduction)
        self.register_buffer("alpha", _as_weight(alpha, "focal loss alpha"), persistent=False)

    def elementwise(self, logits: Tensor, target: Tensor) -> Tensor:
        """Focal loss of every element: (B,) or (B, H, W)."""
        _check_weight_size(self.alpha, logits, "focal loss alpha")
        log_p = F.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_pt.exp()).clamp(min=0.0) ** self.gamma) * log_pt
        if self.alpha is not None:
            loss = loss * self.alpha[target.long()]
        return loss

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return _reduce_elementwise(self.elementwise(logits, target), "per_sample")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return _reduce_elementwise(self.elementwise(logits, target), self.reduction)


class DiceLoss(nn.Module):
    """Soft multi-class Dice loss: 1 - mean over classes of (2 sum(p t) + s) / (sum p + sum t + s).

    p are the softmax probabilities, t the one-hot target, sums run over the pixels of one sample;
    the smoothing ``s`` (default 1) makes a class absent from both prediction and target count as
    a perfect match. ``mean`` averages the per-sample losses; ``none`` equals ``per_sample``.
    """

    def __init__(self, smooth: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if smooth < 0:
            raise ConfigError(f"dice loss smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.reduction = _check_reduction(reduction)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        probs = F.softmax(logits.float(), dim=1).flatten(2)  # (B, C, N)
        one_hot = F.one_hot(target.long().flatten(1), logits.shape[1]).transpose(1, 2).float()
        intersection = (probs * one_hot).sum(2)
        total = probs.sum(2) + one_hot.sum(2)
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth).clamp(min=1e-12)
        return 1.0 - dice.mean(1)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        per_sample = self.per_sample(logits, target)
        if self.reduction == "sum":
            return per_sample.sum()
        if self.reduction in ("none", "per_sample"):
            return per_sample
        return per_sample.mean()


class FocalDiceLoss(nn.Module):
    """focal_weight x focal + dice_weight x Dice (the seed's segmentation loss, 0.5 / 0.5)."""

    def __init__(
        self,
        focal_weight: float = 0.5,
        dice_weight: float = 0.5,
        alpha: Sequence[float] | Tensor | None = None,
        gamma: float = 2.0,
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        self.focal_weight = float(focal_weight)
        self.dice_weight = float(dice_weight)
        self.focal = FocalLoss(alpha=alpha, gamma=gamma)
        self.dice = DiceLoss(smooth=smooth)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.focal_weight * self.focal.per_sample(logits, target) + self.dice_weight * self.dice.per_sample(
            logits, target
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.focal_weight * self.focal(logits, target) + self.dice_weight * self.dice(logits, target)


class CrossEntropyLoss(nn.Module):
    """Cross-entropy, optionally class-weighted.

    ``mean`` follows torch.nn.functional.cross_entropy: with weights it is the weighted average
    sum(w[y] l) / sum(w[y]). ``per_sample`` is the plain mean of the weighted element losses of
    each sample (for (B, C) logits simply w[y] l per sample).
    """

    def __init__(self, weight: Sequence[float] | Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.register_buffer("weight", _as_weight(weight, "cross-entropy class weights"), persistent=False)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_weight_size(self.weight, logits, "cross-entropy class weights")
        loss = F.cross_entropy(logits.float(), target.long(), weight=self.weight, reduction="none")
        return _reduce_elementwise(loss, "per_sample")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_weight_size(self.weight, logits, "cross-entropy class weights")
        if self.reduction == "per_sample":
            return self.per_sample(logits, target)
        return F.cross_entropy(logits.float(), target.long(), weight=self.weight, reduction=self.reduction)


def build_loss(
    name: str, class_weights: Sequence[float] | Tensor | None = None, gamma: float = 2.0
) -> nn.Module:
    """Build a loss by config name.

    focal: FocalLoss(alpha=class_weights, gamma); focal_dice: 0.5 focal + 0.5 Dice (alpha and gamma
    go to the focal part); dice: DiceLoss; ce: unweighted cross-entropy (class_weights not used);
    weighted_ce: cross-entropy weighted by class_weights (required).
    """
    if name == "focal":
        return FocalLoss(alpha=class_weights, gamma=gamma)
    if name == "focal_dice":
        return FocalDiceLoss(alpha=class_weights, gamma=gamma)
    if name == "dice":
        return DiceLoss()
    if name == "ce":
        return CrossEntropyLoss()
    if name == "weighted_ce":
        if class_weights is None:
            raise ConfigError("loss 'weighted_ce' needs class_weights (one weight per class), got none")
        return CrossEntropyLoss(weight=class_weights)
    raise ConfigError(f"unknown loss {name!r}; allowed: {list(LOSS_NAMES)}")


def _per_sample(loss: nn.Module, logits: Tensor, target: Tensor) -> Tensor:
    """One loss value per sample; a plain torch loss (e.g. nn.CrossEntropyLoss) is asked for element losses."""
    if hasattr(loss, "per_sample"):
        return loss.per_sample(logits, target)
    saved = getattr(loss, "reduction", None)
    if saved is None:
        raise TypeError(f"segmentation loss {type(loss).__name__} has neither per_sample() nor a reduction")
    loss.reduction = "none"
    try:
        return _reduce_elementwise(loss(logits, target), "per_sample")
    finally:
        loss.reduction = saved


class MultiTaskLoss(nn.Module):
    """lambda_seg x segmentation + lambda_cls x classification for the dual-gas models.

    outputs: the model's dict (``cls_logits`` (B, C), ``co2_seg_logits`` / ``ch4_seg_logits``
    (B, C, H, W)); batch: ``co2_mask``, ``ch4_mask`` (B, H, W), ``class_label`` (B,) and
    ``modality_mask`` (B, 2) = [CO2 present, CH4 present].

    The segmentation part is the mean of the per-sample segmentation loss over the (sample, gas)
    pairs whose gas is present; a missing gas adds nothing. When no gas is present in the whole
    batch it is exactly 0 (still attached to the graph, so backward works). A term for an output
    the model does not produce (tasks "seg" or "cls") is left out of the total and of the result.

    Returns a dict with ``loss`` and, for the terms present, ``seg_loss`` and ``cls_loss``
    (unweighted), plus ``num_seg_pairs`` (how many (sample, gas) pairs were averaged).
    """

    def __init__(
        self, seg_loss: nn.Module, cls_loss: nn.Module, lambda_seg: float = 1.0, lambda_cls: float = 1.0
    ) -> None:
        super().__init__()
        self.seg_loss = seg_loss
        self.cls_loss = cls_loss
        self.lambda_seg = float(lambda_seg)
        self.lambda_cls = float(lambda_cls)

    def forward(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        result: dict[str, Tensor] = {}
        total: Tensor | None = None

        seg_keys = [(i, gas) for i, gas in enumerate(GASES) if SEG_OUTPUTS[gas] in outputs]
        if seg_keys:
            present_all = batch["modality_mask"] > 0.5  # (B, 2)
            seg_sum: Tensor | None = None
            pairs = torch.zeros((), device=present_all.device)
            for i, gas in seg_keys:
                logits, target = outputs[SEG_OUTPUTS[gas]], batch[f"{gas}_mask"]
                if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
                    raise ValueError(
                        f"{gas}_seg_logits has shape {tuple(logits.shape)} but batch['{gas}_mask'] has "
                        f"shape {tuple(target.shape)}; expected (B, C, H, W) and (B, H, W) with equal B, H, W"
                    )
                present = present_all[:, i]
                per_sample = _per_sample(self.seg_loss, logits, target)
                # where() rather than multiply: a missing frame can never leak NaN/inf into the sum.
                masked = torch.where(present, per_sample, torch.zeros_like(per_sample)).sum()
                seg_sum = masked if seg_sum is None else seg_sum + masked
                pairs = pairs + present.sum()
            assert seg_sum is not None
            seg = seg_sum / pairs.clamp(min=1)
            result["seg_loss"] = seg
            result["num_seg_pairs"] = pairs.detach()
            total = self.lambda_seg * seg

        if CLS_OUTPUT in outputs:
            cls = self.cls_loss(outputs[CLS_OUTPUT], batch["class_label"])
            result["cls_loss"] = cls
            total = self.lambda_cls * cls if total is None else total + self.lambda_cls * cls

        if total is None:
            raise ValueError(
                f"model outputs {sorted(outputs)} contain none of 'cls_logits', 'co2_seg_logits', "
                "'ch4_seg_logits'; nothing to train"
            )
        result["loss"] = total
        return result
