import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fume.data.layout import ANNOTATION_COLUMNS, read_annotations
from fume.data.pairing import pair_dataset, pair_table, pairing_statistics
from fume.data.split import assign_splits, audit_leakage, split_dataset
from fume.errors import DataError


@pytest.fixture
def generated_copy(tiny_generated: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_generated, tmp_path / "d")
    return tmp_path / "d"


def test_grouped_split_shares_no_original_and_keeps_every_class(generated_copy: Path) -> None:
    parts = split_dataset(generated_copy, seed=1)
    tables = {s: read_annotations(generated_copy, s) for s in ("train", "val", "test")}
    ids = {s: set(t["original_sample_id"]) for s, t in tables.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    for t in tables.values():
        assert set(t["class_id"]) == {0, 1, 2}
    assert sum(len(p) for p in parts.values()) == 120
    assert 0.5 < len(tables["train"]) / 120 < 0.8
    report = audit_leakage(generated_copy)
    assert report.ok and "no leakage" in report.render()


def test_random_split_leaks_and_audit_counts_it(generated_copy: Path) -> None:
    split_dataset(generated_copy, seed=0, random=True)
    report = audit_leakage(generated_copy)
    assert not report.ok
    train = read_annotations(generated_copy, "train")
    test = read_annotations(generated_copy, "test")
    shared = set(train["original_sample_id"]) & set(test["original_sample_id"])
    assert report.shared[("train", "test")][:3] == (
        len(shared),
        int(train["original_sample_id"].isin(shared).sum()),
        int(test["original_sample_id"].isin(shared).sum()),
    )
    assert "LEAKAGE" in report.render()


def test_split_keeps_old_tables_and_resplits_from_them(generated_copy: Path) -> None:
    split_dataset(generated_copy, seed=0)
    old_train = (generated_copy / "train_annotations.csv").read_text()
    (generated_copy / "annotations.csv").unlink()
    split_dataset(generated_copy, seed=1)  # reads the union of the split tables
    assert (generated_copy / "train_annotations.csv.bak").read_text() == old_train
    total = sum(len(read_annotations(generated_copy, s)) for s in ("train", "val", "test"))
    assert total == 120


def test_assign_splits_ratios_and_groups() -> None:
    classes = np.repeat([0, 1], 500)
    which = assign_splits(classes, None, (0.7, 0.15, 0.15), seed=0)
    for c in (0, 1):
        np.testing.assert_array_equal(np.bincount(which[classes == c], minlength=3), [350, 75, 75])
    groups = np.repeat(np.arange(100), 5)
    which = assign_splits(np.repeat(np.arange(100) % 2, 5), groups, (0.6, 0.2, 0.2), seed=0)
    assert all(len(set(which[groups == g])) == 1 for g in range(100))
    np.testing.assert_array_equal(np.bincount(which), [300, 100, 100])


def _table(rows: list[tuple]) -> pd.DataFrame:
    """rows: (original_sample_id, gas, ph, class_id, augmentation_id)."""
    names = ["Healthy", "Transitional", "Acidotic"]
    out = []
    for sample, gas, ph, class_id, aug in rows:
        out.append(dict(zip(ANNOTATION_COLUMNS, [f"{sample}_{gas}_{aug}.png", f"m_{sample}_{gas}_{aug}.png", gas, ph,
                                                 names[class_id], class_id, sample, aug])))
    return pd.DataFrame(out)


HAND_TABLE = _table(
    [("a", "co2", 6.5, 0, 0), ("b", "co2", 6.5, 0, 0), ("c", "co2", 6.5, 0, 0), ("d", "ch4", 6.5, 0, 0)]
    + [("e", "co2", 5.9, 1, 0), ("e", "ch4", 5.9, 1, 0), ("e", "co2", 5.9, 1, 1)]
    + [("f", "ch4", 5.0, 2, 0)]
)


def test_random_pairing_statistics_without_reuse() -> None:
    paired = pair_table(HAND_TABLE, "random", seed=0, reuse=False)
    stats = pairing_statistics(paired)
    assert stats == {
        "total": 6,  # 6.5: 1 pair + 2 CO2-only; 5.9: 1 pair + 1 CO2-only; 5.0: 1 CH4-only
        "paired": 2,
        "co2_only": 3,
        "ch4_only": 1,
        "by_class": {"Acidotic": 1, "Healthy": 3, "Transitional": 2},
        "by_ph": {6.5: 3, 5.9: 2, 5.0: 1},
    }
    only = paired[paired["missing_modality"] == "co2"].iloc[0]
    assert only["co2_frame"] == "" and only["ch4_frame"] == "f_ch4_0.png" and not only["is_paired"]
    # Each gas's recording (its original_sample_id) is kept; an absent gas has none.
    assert (only["co2_recording"], only["ch4_recording"]) == ("", "f")
    for row in paired.itertuples():
        for gas in ("co2", "ch4"):
            frame = getattr(row, f"{gas}_frame")
            assert getattr(row, f"{gas}_recording") == (frame.split("_")[0] if frame else "")


def test_random_pairing_with_reuse_pairs_every_frame_of_the_common_gas() -> None:
    paired = pair_table(HAND_TABLE, "random", seed=0, reuse=True)
    stats = pairing_statistics(paired)
    assert (stats["total"], stats["paired"], stats["co2_only"], stats["ch4_only"]) == (6, 5, 0, 1)
    healthy = paired[paired["ph_value"] == 6.5]
    assert sorted(healthy["co2_frame"]) == ["a_co2_0.png", "b_co2_0.png", "c_co2_0.png"]
    assert set(healthy["ch4_frame"]) == {"d_ch4_0.png"}
    # Same pH and class in every pair; same seed, same pairs.
    assert paired.equals(pair_table(HAND_TABLE, "random", seed=0, reuse=True))


def test_original_based_pairing() -> None:
    paired = pair_table(HAND_TABLE, "original_based")
    full = paired[paired["is_paired"]]
    assert full[["co2_frame", "ch4_frame"]].values.tolist() == [["e_co2_0.png", "e_ch4_0.png"]]
    assert pairing_statistics(paired)["total"] == 7


def test_pair_dataset_writes_tables(generated_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run `fume split"):
        pair_dataset(generated_copy)
    split_dataset(generated_copy)
    result = pair_dataset(generated_copy, out=tmp_path / "paired", seed=2)
    for split, table in result.items():
        written = pd.read_csv(tmp_path / "paired" / f"paired_{split}_annotations.csv", keep_default_na=False)
        assert len(written) == len(table)
        # paths stay relative to the dataset root
        assert all((generated_copy / p).is_file() for p in written["co2_frame"] if p)
        pairs = written[written["is_paired"]]
        ph = read_annotations(generated_copy, split).set_index("frame_path")["ph_value"]
        np.testing.assert_allclose(ph[pairs["co2_frame"]].to_numpy(), ph[pairs["ch4_frame"]].to_numpy())
