"""Loss values checked against numbers worked out by hand or with plain numpy."""

import math

import numpy as np
import pytest
import torch

from fume.errors import ConfigError
from fume.training.losses import CrossEntropyLoss, DiceLoss, FocalDiceLoss, FocalLoss, MultiTaskLoss, build_loss


def np_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_focal_two_equal_logits_by_hand():
    # p = 1/3 for each of 3 classes; FL = alpha * (2/3)^2 * ln 3
    logits = torch.zeros(2, 3)
    target = torch.tensor([0, 1])
    loss = FocalLoss(alpha=[1.0, 8.0, 1.2], gamma=2.0, reduction="none")(logits, target)
    expected = [1.0 * (4 / 9) * math.log(3), 8.0 * (4 / 9) * math.log(3)]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)
    mean = FocalLoss(alpha=[1.0, 8.0, 1.2], gamma=2.0)(logits, target)
    assert mean.item() == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_focal_classification_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    target = np.array([0, 2, 1, 1, 2])
    alpha = np.array([1.0, 8.0, 1.2])
    p = np_softmax(logits.astype(np.float64))
    pt = p[np.arange(5), target]
    expected = -alpha[target] * (1 - pt) ** 1.5 * np.log(pt)
    fl = FocalLoss(alpha=alpha.tolist(), gamma=1.5)
    got = fl.per_sample(torch.from_numpy(logits), torch.from_numpy(target))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    assert fl(torch.from_numpy(logits), torch.from_numpy(target)).item() == pytest.approx(expected.mean(), rel=1e-5)


def test_focal_segmentation_per_sample_and_gamma0_is_ce():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    target = rng.integers(0, 3, size=(2, 4, 5))
    p = np_softmax(logits.astype(np.float64))
    pt = np.take_along_axis(p, target[:, None], axis=1)[:, 0]
    elem = -((1 - pt) ** 2) * np.log(pt)
    got = FocalLoss(gamma=2.0).per_sample(torch.from_numpy(logits), torch.from_numpy(target))
    np.testing.assert_allclose(got.numpy(), elem.reshape(2, -1).mean(1), rtol=1e-5)
    none = FocalLoss(gamma=2.0, reduction="none")(torch.from_numpy(logits), torch.from_numpy(target))
    assert none.shape == (2, 4, 5)
    ce0 = FocalLoss(gamma=0.0)(torch.from_numpy(logits), torch.from_numpy(target))
    assert ce0.item() == pytest.approx(float(-np.log(pt).mean()), rel=1e-5)


def test_dice_by_hand():
    # One sample, 2 pixels, 3 classes, probabilities chosen exactly via log-probabilities.
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])  # pixel 0, pixel 1
    logits = torch.tensor(np.log(probs).T[None, :, None, :], dtype=torch.float32)  # (1, 3, 1, 2)
    target = torch.tensor([[[0, 2]]])
    # class 0: inter 0.7, sum p 0.8, sum t 1 -> (1.4 + 1) / (1.8 + 1)
    # class 1: inter 0,   sum p 0.3, sum t 0 -> 1 / 1.3
    # class 2: inter 0.8, sum p 0.9, sum t 1 -> (1.6 + 1) / (1.9 + 1)
    dice = [(2.4 / 2.8), (1 / 1.3), (2.6 / 2.9)]
    expected = 1 - sum(dice) / 3
    assert DiceLoss()(logits, target).item() == pytest.approx(expected, rel=1e-5)
    # smooth 0: class 1 gives 0 / 0.3 = 0
    dice0 = [1.4 / 1.8, 0.0, 1.6 / 1.9]
    assert DiceLoss(smooth=0.0)(logits, target).item() == pytest.approx(1 - sum(dice0) / 3, rel=1e-5)


def test_dice_mean_is_mean_of_per_sample_and_perfect_prediction_is_near_zero():
    target = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [0, 0]]])
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50.0
    assert DiceLoss()(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(2)
    logits = torch.from_numpy(rng.normal(size=(2, 3, 2, 2)).astype(np.float32))
    per = DiceLoss().per_sample(logits, target)
    assert per.shape == (2,)
    assert DiceLoss()(logits, target).item() == pytest.approx(per.mean().item(), rel=1e-6)


def test_focal_dice_is_half_half():
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(2, 3, 3, 3)).astype(np.float32))
    target = torch.from_numpy(rng.integers(0, 3, size=(2, 3, 3)))
    combined = FocalDiceLoss()(logits, target).item()
    expected = 0.5 * FocalLoss(gamma=2.0)(logits, target).item() + 0.5 * DiceLoss()(logits, target).item()
    assert combined == pytest.approx(expected, rel=1e-6)


def test_weighted_ce_against_numpy():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 3)).astype(np.float32)
    target = np.array([0, 1, 1, 2, 0, 1])
    w = np.array([1.0, 8.0, 1.2])
    nll = -np.log(np_softmax(logits.astype(np.float64))[np.arange(6), target])
    expected = (w[target] * nll).sum() / w[target].sum()
    got = build_loss("weighted_ce", class_weights=w.tolist())(torch.from_numpy(logits), torch.from_numpy(target))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    plain = build_loss("ce", class_weights=w.tolist())(torch.from_numpy(logits), torch.from_numpy(target))
    assert plain.item() == pytest.approx(nll.mean(), rel=1e-5)
    per = CrossEntropyLoss(weight=w.tolist()).per_sample(torch.from_numpy(logits), torch.from_numpy(target))
    np.testing.assert_allclose(per.numpy(), w[target] * nll, rtol=1e-5)


def test_build_loss_names_and_errors():
    assert isinstance(build_loss("focal", [1.0, 8.0, 1.2], gamma=2.0), FocalLoss)
    assert isinstance(build_loss("focal_dice"), FocalDiceLoss)
    assert isinstance(build_loss("dice"), DiceLoss)
    with pytest.raises(ConfigError, match=r"unknown loss 'tversky'; allowed: \['focal', 'focal_dice', 'dice', 'ce', 'weighted_ce'\]"):
        build_loss("tversky")
    with pytest.raises(ConfigError, match="'weighted_ce' needs class_weights"):
        build_loss("weighted_ce")
    with pytest.raises(ValueError, match="has 2 entries but the logits have 3 classes"):
        FocalLoss(alpha=[1.0, 2.0])(torch.zeros(1, 3), torch.tensor([0]))


def _batch(b=3, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "co2_mask": torch.randint(0, 3, (b, h, w), generator=g),
        "ch4_mask": torch.randint(0, 3, (b, h, w), generator=g),
        "class_label": torch.tensor([0, 1, 2])[:b],
        "modality_mask": torch.ones(b, 2),
    }


def _outputs(b=3, h=4, w=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        "cls_logits": torch.randn(b, 3, generator=g, requires_grad=True),
        "co2_seg_logits": torch.randn(b, 3, h, w, generator=g, requires_grad=True),
        "ch4_seg_logits": torch.randn(b, 3, h, w, generator=g, requires_grad=True),
    }


def _np_focal_per_sample(logits: torch.Tensor, target: torch.Tensor, gamma=2.0) -> np.ndarray:
    p = np_softmax(logits.detach().double().numpy())
    pt = np.take_along_axis(p, target.numpy()[:, None], axis=1)[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):  # the deliberately absurd missing-gas logits
        return (-((1 - pt) ** gamma) * np.log(pt)).reshape(len(pt), -1).mean(1)


def test_multitask_masks_missing_gases():
    batch, out = _batch(), _outputs()
    batch["modality_mask"] = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    # A missing gas whose logits are absurd must not change anything.
    with torch.no_grad():
        out["ch4_seg_logits"][1] = 1e4 * torch.randn(3, 4, 4)
    mtl = MultiTaskLoss(FocalLoss(gamma=2.0), FocalLoss(alpha=[1.0, 8.0, 1.2]), lambda_seg=2.0, lambda_cls=0.5)
    res = mtl(out, batch)
    co2 = _np_focal_per_sample(out["co2_seg_logits"], batch["co2_mask"])
    ch4 = _np_focal_per_sample(out["ch4_seg_logits"], batch["ch4_mask"])
    present = [co2[0], ch4[0], co2[1], ch4[2]]  # 4 (sample, gas) pairs present
    seg = sum(present) / 4
    p = np_softmax(out["cls_logits"].detach().double().numpy())
    pt = p[np.arange(3), [0, 1, 2]]
    cls = float(np.mean(-np.array([1.0, 8.0, 1.2]) * (1 - pt) ** 2 * np.log(pt)))
    assert res["seg_loss"].item() == pytest.approx(seg, rel=1e-5)
    assert res["cls_loss"].item() == pytest.approx(cls, rel=1e-5)
    assert res["loss"].item() == pytest.approx(2.0 * seg + 0.5 * cls, rel=1e-5)
    assert res["num_seg_pairs"].item() == 4
    res["loss"].backward()
    assert torch.all(out["ch4_seg_logits"].grad[1] == 0)
    assert out["co2_seg_logits"].grad[1].abs().sum() > 0


def test_multitask_no_gas_present_gives_exact_zero_with_gradient_path():
    batch, out = _batch(), _outputs()
    batch["modality_mask"] = torch.zeros(3, 2)
    res = MultiTaskLoss(FocalDiceLoss(), FocalLoss())(out, batch)
    assert res["seg_loss"].item() == 0.0
    assert res["seg_loss"].requires_grad
    res["loss"].backward()
    for key in out:
        assert torch.isfinite(out[key].grad).all()
    assert torch.all(out["co2_seg_logits"].grad == 0)


def test_multitask_skips_outputs_the_model_does_not_make():
    batch, out = _batch(), _outputs()
    seg_only = {k: v for k, v in out.items() if k != "cls_logits"}
    res = MultiTaskLoss(DiceLoss(), FocalLoss())(seg_only, batch)
    assert set(res) == {"loss", "seg_loss", "num_seg_pairs"}
    assert res["loss"].item() == pytest.approx(res["seg_loss"].item())
    cls_only = {"cls_logits": out["cls_logits"]}
    res = MultiTaskLoss(DiceLoss(), FocalLoss(), lambda_cls=3.0)(cls_only, batch)
    assert set(res) == {"loss", "cls_loss"}
    assert res["loss"].item() == pytest.approx(3.0 * res["cls_loss"].item())
    with pytest.raises(ValueError, match="contain none of"):
        MultiTaskLoss(DiceLoss(), FocalLoss())({}, batch)


def test_multitask_accepts_plain_torch_loss_and_checks_shapes():
    batch, out = _batch(), _outputs()
    res = MultiTaskLoss(torch.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss())(out, batch)
    ce = torch.nn.functional.cross_entropy
    seg = (ce(out["co2_seg_logits"], batch["co2_mask"]) + ce(out["ch4_seg_logits"], batch["ch4_mask"])) / 2
    assert res["seg_loss"].item() == pytest.approx(seg.item(), rel=1e-5)
    batch["co2_mask"] = batch["co2_mask"][:, :2]
    with pytest.raises(ValueError, match=r"co2_seg_logits has shape \(3, 3, 4, 4\) but batch\['co2_mask'\] has shape \(3, 2, 4\)"):
        MultiTaskLoss(DiceLoss(), FocalLoss())(out, batch)
