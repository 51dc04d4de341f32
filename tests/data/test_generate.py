import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fume.config import LabelConfig
from fume.contract import parse_size
from fume.data.frames import load_frame, load_mask
from fume.data.generate import allocate_recordings, generate_dataset, largest_remainder
from fume.data.layout import ANNOTATION_COLUMNS, read_annotations
from fume.data.physics import DIFFICULTIES, load_physics
from fume.data.render import Recording, render_recording
from fume.data.validate import validate_dataset
from fume.errors import ConfigError


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, difficulty: str) -> None:
    args = {"n_originals": 6, "augmentations": 1, "size": (64, 48), "difficulty": difficulty}
    generate_dataset(tmp_path / "a", seed=5, **args)
    generate_dataset(tmp_path / "b", seed=5, **args)
    generate_dataset(tmp_path / "c", seed=6, **args)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_difficulties_differ(tmp_path: Path) -> None:
    args = {"n_originals": 6, "augmentations": 0, "size": (64, 48), "seed": 5}
    generate_dataset(tmp_path / "realistic", **args)
    generate_dataset(tmp_path / "easy", difficulty="easy", **args)
    assert _digest(tmp_path / "realistic") != _digest(tmp_path / "easy")


def test_real_layout_and_valid(tiny_generated: Path) -> None:
    raw = pd.read_csv(tiny_generated / "annotations.csv", dtype=str)
    assert list(raw.columns) == ANNOTATION_COLUMNS
    assert raw["frame_path"].str.startswith("mmseg_dataset\\").any()  # exercised normaliser
    assert not (tiny_generated / "train_annotations.csv").exists()  # splits come from `fume split`
    report = validate_dataset(tiny_generated)
    assert report.ok, report.render()
    table = read_annotations(tiny_generated)
    assert len(table) == 40 * 3
    frame = load_frame(tiny_generated / table["frame_path"].iloc[0])
    mask = load_mask(tiny_generated / table["mask_path"].iloc[0])
    assert frame.shape == mask.shape == (48, 64)
    assert set(np.unique(mask)) == {0, 1, 2}
    # Copies share the recording's id; ids and augmentation ids are complete.
    per_original = table.groupby(["original_sample_id", "gas_type"])["augmentation_id"].apply(sorted)
    assert all(ids == [0, 1, 2] for ids in per_original)


def test_default_class_and_gas_mix() -> None:
    recordings = allocate_recordings(1000, [0.45, 0.026, 0.524], 0.69, LabelConfig())
    classes = np.bincount([r.class_id for r in recordings], minlength=3) / 1000
    np.testing.assert_allclose(classes, [0.45, 0.026, 0.524], atol=0.002)
    assert np.mean([r.gas == "co2" for r in recordings]) == pytest.approx(0.69, abs=0.01)
    assert {r.ph for r in recordings} == {6.5, 6.2, 5.9, 5.6, 5.3, 5.0}
    # CH4 recordings share the tube id of a CO2 recording at the same pH (original_based pairing).
    co2_ids = {r.original_sample_id for r in recordings if r.gas == "co2"}
    assert all(r.original_sample_id in co2_ids for r in recordings if r.gas == "ch4")


def test_adjustable_mix(tmp_path: Path) -> None:
    table = generate_dataset(
        tmp_path, n_originals=20, augmentations=0, size=(48, 32), class_mix=(0, 1, 0), co2_fraction=0.5
    )
    assert set(table["class_name"]) == {"Transitional"} and set(table["ph_value"]) == {5.9}
    assert (table["gas_type"] == "co2").sum() == 10


def test_largest_remainder() -> None:
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(largest_remainder(428, [0.45, 0.026, 0.524])) == 428


def test_plume_area_follows_the_release_rate() -> None:
    """The label physics: CO2 plumes grow when acidotic, CH4 plumes shrink below pH 6.2."""
    physics = load_physics()

    def area(gas: str, ph: float) -> float:
        fractions = []
        for i in range(12):
            _, mask, _ = render_recording(Recording(i, "x", gas, ph, 0), (96, 72), physics, np.random.default_rng(i))
            fractions.append((mask == 2).mean())
        return float(np.mean(fractions))

    assert area("co2", 5.0) > 1.5 * area("co2", 6.5)
    assert area("co2", 5.9) < 1.3 * area("co2", 6.5)
    assert area("ch4", 6.5) > 1.5 * area("ch4", 5.9)
    assert area("ch4", 5.0) < 1.3 * area("ch4", 5.9)


def test_refuses_non_empty_output_and_bad_options(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not empty"):
        generate_dataset(tmp_path, n_originals=2, augmentations=0, size=(48, 32))
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="class_mix"):
        generate_dataset(tmp_path / "x", class_mix=(1, 1))
    with pytest.raises(ConfigError, match=r"size must be WIDTHxHEIGHT such as 640x480, got '640\*480'"):
        parse_size("640*480", model_input=False)
    assert parse_size("100x75", model_input=False) == (100, 75)  # frames may have any size
    with pytest.raises(ConfigError, match="both sides must be at least 32 pixels"):
        parse_size("31x480", model_input=False)
    with pytest.raises(ConfigError, match=r"size '100x75': width and height must be positive multiples of 32 .*nearest valid sizes \(WxH\): 96x64, 128x64, 96x96, 128x96"):
        parse_size("100x75")  # a model's input must be a multiple of 32
    with pytest.raises(ConfigError, match="no co2 release rate for pH 7.0"):
        generate_dataset(tmp_path / "y", label_config=LabelConfig(ph_to_class={7.0: 0, 5.9: 1, 5.0: 2}))
