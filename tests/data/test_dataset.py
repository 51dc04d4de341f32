from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytest
import torch
from data_helpers import write_png

from fume.data.dataset import PairedDataset
from fume.data.layout import PAIRED_COLUMNS
from fume.data.transforms import AugmentationConfig, build_augmentation, noise_std_range
from fume.errors import ConfigError, DataError

H, W = 40, 56


def _coded_pair(root: Path, name: str, rng: np.random.Generator) -> tuple[str, str]:
    """A frame whose intensity encodes its mask (0 -> 30, 1 -> 130, 2 -> 230)."""
    mask = np.zeros((H, W), np.uint8)
    y, x = rng.integers(5, H - 15), rng.integers(5, W - 25)
    mask[y : y + 12, x : x + 20] = 2
    mask[y + 4 : y + 8, x + 20 :] = 1
    write_png(root / f"f/{name}.png", (30 + 100 * mask).astype(np.uint8))
    write_png(root / f"m/{name}.png", mask)
    return f"f/{name}.png", f"m/{name}.png"


def _paired(root: Path, n: int, missing_every: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        co2 = _coded_pair(root, f"co2_{i}", rng)
        ch4 = _coded_pair(root, f"ch4_{i}", rng)
        missing = "ch4" if missing_every and i % missing_every == 0 else ""
        if missing:
            ch4 = ("", "")
        class_id = [0, 0, 1, 2][i % 4]
        rows.append(dict(zip(PAIRED_COLUMNS, [f"s{i}", *co2, *ch4, [6.5, 6.2, 5.9, 5.0][i % 4], class_id,
                                              ["Healthy", "Healthy", "Transitional", "Acidotic"][i % 4],
                                              not missing, missing])))
    return pd.DataFrame(rows)


def test_item_shapes_dtypes_and_missing_gas(tmp_path: Path) -> None:
    table = _paired(tmp_path, 4, missing_every=2)
    table.to_csv(tmp_path / "paired_train_annotations.csv", index=False)
    ds = PairedDataset(tmp_path / "paired_train_annotations.csv", tmp_path, image_size=(32, 24))
    item = ds[0]  # CH4 missing
    assert item["co2_frame"].shape == (1, 24, 32) and item["co2_frame"].dtype == torch.float32
    assert item["co2_mask"].shape == (24, 32) and item["co2_mask"].dtype == torch.int64
    assert 0.0 <= item["co2_frame"].min() and item["co2_frame"].max() <= 1.0
    assert torch.equal(item["modality_mask"], torch.tensor([1.0, 0.0]))
    assert item["ch4_frame"].abs().sum() == 0 and item["ch4_mask"].sum() == 0
    assert item["ch4_frame"].shape == (1, 24, 32) and item["ch4_mask"].shape == (24, 32)
    assert item["class_label"].dtype == torch.int64 and item["class_label"].ndim == 0
    assert item["ph_value"].dtype == torch.float32 and item["ph_value"].item() == pytest.approx(6.5)
    assert item["sample_id"] == "s0"
    full = ds[1]
    assert torch.equal(full["modality_mask"], torch.tensor([1.0, 1.0]))
    # Resizing keeps the frame/mask code: a nearest-resized mask matches the area-resized frame
    # away from edges.
    decoded = torch.round((full["co2_frame"][0] * 255 - 30) / 100).long()
    assert (decoded == full["co2_mask"]).float().mean() > 0.9
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["co2_frame"].shape == (4, 1, 24, 32) and batch["class_label"].tolist() == [0, 0, 1, 2]


def test_geometric_augmentation_keeps_frame_and_mask_aligned(tmp_path: Path) -> None:
    table = _paired(tmp_path, 8)
    geometric = AugmentationConfig(brightness_contrast_p=0, noise_p=0, blur_p=0, gamma_p=0,
                                   rotate_p=1.0, affine_p=1.0, horizontal_flip_p=0.5)
    ds = PairedDataset(table, tmp_path, augment=build_augmentation(geometric), seed=0)
    moved = 0
    for i in range(len(ds)):
        item = ds[i]
        for gas in ("co2", "ch4"):
            mask = item[f"{gas}_mask"]
            assert set(mask.unique().tolist()) <= {0, 1, 2}
            decoded = torch.round((item[f"{gas}_frame"][0] * 255 - 30) / 100).clamp(0, 2).long()
            # Linear interpolation of the frame blurs only the boundaries.
            assert (decoded == mask).float().mean() > 0.95
            moved += int(not torch.equal(mask, _mask_of(tmp_path, table, i, gas)))
    assert moved >= 12  # the augmentation did move things


def _mask_of(root: Path, table: pd.DataFrame, i: int, gas: str) -> torch.Tensor:
    from fume.data.frames import load_mask

    return torch.from_numpy(load_mask(root / table[f"{gas}_mask"].iloc[i]).astype(np.int64))


def test_full_augmentation_masks_stay_in_label_set(tmp_path: Path) -> None:
    ds = PairedDataset(_paired(tmp_path, 6), tmp_path, image_size=(32, 32), augment=True)
    for i in range(len(ds)):
        item = ds[i]
        assert set(item["co2_mask"].unique().tolist()) <= {0, 1, 2}
        assert item["co2_frame"].shape == (1, 32, 32)


def test_seeded_dataset_is_reproducible(tmp_path: Path) -> None:
    table = _paired(tmp_path, 3)
    a = PairedDataset(table, tmp_path, augment=True, modality_dropout=0.5, seed=7)
    b = PairedDataset(table, tmp_path, augment=True, modality_dropout=0.5, seed=7)
    for i in range(3):
        assert torch.equal(a[i]["co2_frame"], b[i]["co2_frame"])
        assert torch.equal(a[i]["modality_mask"], b[i]["modality_mask"])
    b.set_epoch(1)
    assert any(not torch.equal(a[i]["co2_frame"], b[i]["co2_frame"]) for i in range(3))


def test_modality_dropout_rate(tmp_path: Path) -> None:
    table = _paired(tmp_path, 10, missing_every=5)  # 8 full pairs, 2 CO2-only samples
    table = pd.concat([table] * 40, ignore_index=True)
    ds = PairedDataset(table, tmp_path, image_size=(16, 16), modality_dropout=0.3, seed=1)
    masks = torch.stack([ds[i]["modality_mask"] for i in range(len(ds))])
    full = torch.tensor((table["missing_modality"] == "").to_numpy())
    dropped = masks[full].sum(1) == 1
    assert 0.24 < dropped.float().mean() < 0.36  # 320 full pairs, p = 0.3
    co2_dropped = (masks[full][dropped][:, 0] == 0).float().mean()
    assert 0.3 < co2_dropped < 0.7  # either gas
    assert torch.equal(masks[~full], torch.tensor([[1.0, 0.0]]).expand(int((~full).sum()), 2))  # never both
    no_dropout = PairedDataset(table, tmp_path, image_size=(16, 16))
    assert all(no_dropout[i]["modality_mask"].sum() == 2 for i in range(1, 5))


def test_sample_weights_are_inverse_class_frequency(tmp_path: Path) -> None:
    table = _paired(tmp_path, 8)  # classes 0,0,1,2,0,0,1,2
    ds = PairedDataset(table, tmp_path)
    assert ds.class_counts() == [4, 2, 2]
    weights = ds.sample_weights()
    assert weights.dtype == torch.double
    expected = torch.tensor([1 / 4, 1 / 4, 1 / 2, 1 / 2] * 2, dtype=torch.double)
    torch.testing.assert_close(weights, expected)
    # Each class gets the same total weight, as a WeightedRandomSampler needs.
    labels = torch.tensor(table["class_id"].to_numpy())
    assert len({round(float(weights[labels == c].sum()), 6) for c in range(3)}) == 1


def test_unreadable_file_is_an_error_not_a_blank(tmp_path: Path) -> None:
    table = _paired(tmp_path, 2)
    (tmp_path / table["ch4_frame"].iloc[1]).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = PairedDataset(table, tmp_path)
    with pytest.raises(DataError, match="cannot read frame .*ch4_1.png"):
        ds[1]
    (tmp_path / table["co2_mask"].iloc[0]).unlink()
    with pytest.raises(DataError, match="mask file not found: .*co2_0.png"):
        ds[0]


def test_bad_arguments(tmp_path: Path) -> None:
    table = _paired(tmp_path, 1)
    with pytest.raises(ConfigError, match="modality_dropout"):
        PairedDataset(table, tmp_path, modality_dropout=1.5)
    with pytest.raises(DataError, match=r"missing column\(s\) \['is_paired'"):
        PairedDataset(table.drop(columns=["is_paired"]), tmp_path)
    bad = table.copy()
    bad["co2_mask"] = bad["ch4_mask"]
    write_png(tmp_path / bad["co2_mask"].iloc[0], np.full((H, W), 5, np.uint8))
    with pytest.raises(DataError, match=r"holds values \[5\]"):
        PairedDataset(bad, tmp_path)[0]


def test_augmentation_config_follows_the_seed() -> None:
    cfg = AugmentationConfig()
    assert (cfg.horizontal_flip_p, cfg.rotate_limit, cfg.shift_limit, cfg.scale_limit) == (0.5, 15.0, 0.1, 0.15)
    assert (cfg.noise_p, cfg.blur_p, cfg.gamma_p, cfg.brightness_contrast_p) == (0.3, 0.3, 0.3, 0.5)
    low, high = noise_std_range((10, 50))
    assert low * 255 == pytest.approx(10**0.5) and high * 255 == pytest.approx(50**0.5)
    names = [type(t).__name__ for t in build_augmentation(cfg).transforms]
    assert names == ["HorizontalFlip", "Rotate", "Affine", "RandomBrightnessContrast", "GaussNoise",
                     "GaussianBlur", "RandomGamma"]
    assert isinstance(build_augmentation(), A.Compose)
    with pytest.raises(ValueError):
        AugmentationConfig(noise_p=2)
