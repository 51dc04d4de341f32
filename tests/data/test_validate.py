from pathlib import Path

import numpy as np
import pandas as pd
from data_helpers import simple_mask, write_png

from fume.data.validate import validate_dataset


def test_clean_dataset_is_ok(real_layout: Path) -> None:
    report = validate_dataset(real_layout)
    assert report.ok, report.render()
    assert report.tables == {"annotations.csv": 48}
    assert report.files_checked == 96
    assert report.counts["class"] == {"Acidotic": 12, "Healthy": 24, "Transitional": 12}
    assert "OK: no defects found" in report.render()


def _break(root: Path) -> None:
    """One row per defect kind of `fume validate-data` (issue 2, item 3)."""
    table = pd.read_csv(root / "annotations.csv", dtype=str, keep_default_na=False)
    norm = table["frame_path"].str.replace("mmseg_dataset\\", "", regex=False).str.replace("\\", "/", regex=False)
    masks = table["mask_path"].str.replace("mmseg_dataset/", "", regex=False)
    (root / norm[0]).unlink()  # row 2: missing file
    data = (root / norm[1]).read_bytes()
    (root / norm[1]).write_bytes(data[: len(data) // 2])  # row 3: truncated frame
    bad = simple_mask()
    bad[0, 0] = 7
    write_png(root / masks[2], bad)  # row 4: mask value 7
    write_png(root / norm[3], np.zeros((10, 10), np.uint8))  # row 5: frame 10x10, mask 32x24
    table.loc[4, "gas_type"] = "n2o"  # row 6
    table.loc[5, "class_name"] = "Sick"  # row 7
    table.loc[6, ["ph_value", "class_id", "class_name"]] = ["5.0", "0", "Healthy"]  # row 8: pH 5.0 is Acidotic
    table = pd.concat([table, table.iloc[[7]]], ignore_index=True)  # last row: duplicate of row 9
    table.loc[8, "augmentation_id"] = "first"  # row 10: not a number
    table.to_csv(root / "annotations.csv", index=False)


def test_each_defect_is_reported_with_its_row(real_layout: Path) -> None:
    _break(real_layout)
    report = validate_dataset(real_layout)
    assert not report.ok
    d = report.defects
    assert len(d["missing_file"]) == 1 and "row 2: frame img_dir/co2/ph6.5_co2_0_0.png not found" in d["missing_file"][0]
    assert len(d["unreadable_image"]) == 1 and "row 3" in d["unreadable_image"][0]
    assert "truncated" in d["unreadable_image"][0]
    assert len(d["mask_values"]) == 1 and "row 4" in d["mask_values"][0] and "[7]" in d["mask_values"][0]
    assert len(d["size_mismatch"]) == 1 and "row 5" in d["size_mismatch"][0] and "10x10, mask is 32x24" in d["size_mismatch"][0]
    assert d["unknown_gas"] == ["annotations.csv row 6: gas_type 'n2o'; expected one of ['co2', 'ch4']"]
    assert len(d["unknown_class"]) == 1 and "row 7: class_name 'Sick'" in d["unknown_class"][0]
    assert d["class_ph_mismatch"] == [
        "annotations.csv row 8: pH 5.0 maps to Acidotic but the row says Healthy (class_id 0)"
    ]
    assert len(d["duplicate_row"]) == 1 and "row 50" in d["duplicate_row"][0]
    assert d["bad_value"] == ["annotations.csv row 10: augmentation_id = 'first' is not a number"]
    text = report.render()
    assert "FAILED: 9 defect(s)" in text
    assert "missing_file (frame or mask file not found): 1" in text


def test_missing_columns_and_no_table(tmp_path: Path) -> None:
    report = validate_dataset(tmp_path)
    assert not report.ok and "no annotation table" in report.defects["missing_file"][0]
    pd.DataFrame({"frame_path": ["a.png"]}).to_csv(tmp_path / "train_annotations.csv", index=False)
    report = validate_dataset(tmp_path)
    assert report.defects["missing_columns"][0].startswith("train_annotations.csv: missing ['mask_path', 'gas_type'")


def test_examples_are_capped_in_the_report(real_layout: Path) -> None:
    table = pd.read_csv(real_layout / "annotations.csv")
    table["gas_type"] = "xx"
    table.to_csv(real_layout / "annotations.csv", index=False)
    text = validate_dataset(real_layout, check_files=False).render()
    assert "unknown_gas (gas_type other than co2 / ch4): 48" in text
    assert "... and 43 more" in text
