"""The realistic synthetic benchmark: how its frames look, that only the release rate carries the
class, and how hard it is (cue tests and the separability band at a small size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from fume.config import shipped_configs
from fume.contract import GAS, TUBE
from fume.data.difficulty import cross_validated, dataset_features
from fume.data.generate import TRUTH_FILE, generate_dataset
from fume.data.physics import PlumePhysics, load_physics
from fume.data.render import Recording, render_scene
from fume.errors import ConfigError

SIZE = (160, 120)


def _scenes(gas: str, n: int = 24, physics: PlumePhysics | None = None, ph: float = 6.5):
    physics = physics or load_physics()
    return [render_scene(Recording(i, "x", gas, ph, 0), SIZE, physics, np.random.default_rng([7, i])) for i in range(n)]


@pytest.mark.parametrize(("gas", "low", "high"), [("co2", 0.08, 0.18), ("ch4", 0.04, 0.10)])
def test_faint_plumes_whose_mask_is_the_envelope(gas: str, low: float, high: float) -> None:
    for scene in _scenes(gas):
        gas_px = scene.mask == GAS
        background, clean = scene.background[gas_px], scene.clean[gas_px]  # before noise
        darkening = 1 - clean / background
        # Mean darkening inside the mask, of the local background (upscaling moves it a little).
        assert low - 0.01 <= darkening.mean() <= high + 0.01
        # The outer part of the mask, at least a fifth of it, darkens less than the noise.
        assert np.mean(background - clean < scene.noise_std) >= 0.2
        # Nothing outside the mask is darkened (beyond the upscaling's one pixel).
        outside = scene.mask == 0
        assert np.mean(scene.background[outside] - scene.clean[outside] > scene.noise_std) < 0.01


def test_plume_sizes_and_camera_artefacts() -> None:
    scenes = _scenes("co2", 30) + _scenes("ch4", 30)
    areas = np.array([(s.mask == GAS).mean() for s in scenes])
    assert 0.04 <= areas.min() and areas.max() <= 0.61 and np.median(areas) > 0.1
    touching = [((s.mask[[0, -1], :] == GAS).any() or (s.mask[:, [0, -1]] == GAS).any()) for s in scenes]
    assert 0 < np.mean(touching) < 1  # some plumes reach the frame's edge
    # JPEG 8x8 blocks: the jump between pixels is larger across block borders than inside blocks.
    across, inside = [], []
    for s in scenes:
        jumps = np.abs(np.diff(s.frame.astype(np.float32), axis=1)).mean(axis=0)  # column k -> k+1
        across.append(jumps[7::8].mean())
        inside.append(np.delete(jumps, np.s_[7::8]).mean())
    assert np.mean(across) > 1.1 * np.mean(inside)
    # A black outside of the chamber on some frames.
    assert any((s.background < 0.1).mean() > 0.02 for s in scenes)


def test_camera_text_is_drawn_on_the_frame_only() -> None:
    base = load_physics().model_dump()
    without = PlumePhysics(**base | {"text_probability": 0.0, "jpeg_quality": None})
    with_text = PlumePhysics(**base | {"text_probability": 1.0, "jpeg_quality": None})
    for i in range(6):
        a = render_scene(Recording(i, "x", "co2", 6.5, 0), SIZE, without, np.random.default_rng(i))
        b = render_scene(Recording(i, "x", "co2", 6.5, 0), SIZE, with_text, np.random.default_rng(i))
        np.testing.assert_array_equal(a.mask, b.mask)
        changed = np.argwhere(a.frame != b.frame)
        assert len(changed) > 10
        # All in one corner: within a quarter of the width and height of one corner.
        rows, cols = changed[:, 0], changed[:, 1]
        for along, n in ((rows, SIZE[1]), (cols, SIZE[0])):
            assert along.max() < n / 4 or along.min() > 3 * n / 4


def test_only_the_release_rate_depends_on_the_ph() -> None:
    """The same draws at pH 6.5 and 5.0: background, tube, noise and contrast identical, the plume
    larger (CO2) or smaller (CH4) only."""
    physics = load_physics()
    for gas in ("co2", "ch4"):
        for i in range(8):
            healthy, acidotic = (render_scene(Recording(i, "x", gas, ph, 0), SIZE, physics, np.random.default_rng(i)) for ph in (6.5, 5.0))
            np.testing.assert_array_equal(healthy.background, acidotic.background)
            np.testing.assert_array_equal(healthy.mask == TUBE, acidotic.mask == TUBE)
            assert healthy.noise_std == acidotic.noise_std
            ratio = physics.release_rate(gas, 5.0) / physics.release_rate(gas, 6.5)
            assert acidotic.rate / healthy.rate == pytest.approx(ratio)
            if healthy.target_area < physics.max_area * SIZE[0] * SIZE[1] and acidotic.target_area < physics.max_area * SIZE[0] * SIZE[1]:
                assert abs(healthy.darkening().mean() - acidotic.darkening().mean()) < 0.02


def test_physics_file_is_validated_and_selectable(tmp_path: Path) -> None:
    raw = yaml.safe_load(shipped_configs("synthetic")["realistic"].read_text())
    assert load_physics() == PlumePhysics.model_validate(raw)
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(raw | {"recording_noise": 0.5}))
    assert load_physics(mine).recording_noise == 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw | {"contrast": {"co2": [0.2, 0.1], "ch4": [0.04, 0.1]}}))
    with pytest.raises(ConfigError, match=r"(?s)bad.yaml.*contrast.co2 must be a range"):
        load_physics(bad)
    bad.write_text(yaml.safe_dump(raw | {"colour": 1}))
    with pytest.raises(ConfigError, match="colour: unknown key; allowed keys here: release, recording_noise"):
        load_physics(bad)
    with pytest.raises(ConfigError, match="unknown difficulty 'hard'"):
        load_physics(difficulty="hard")


@pytest.fixture(scope="module")
def small_benchmark(tmp_path_factory: pytest.TempPathFactory):
    """300 recordings at 96x72, equal class and gas mix, no copies: per difficulty, the
    cross-validated balanced accuracies on area, background and contrast (fume.data.difficulty)."""
    results = {}
    for difficulty in ("realistic", "easy"):
        root = tmp_path_factory.mktemp(difficulty)
        generate_dataset(root, n_originals=300, augmentations=0, size=(96, 72), seed=0, class_mix=(1, 1, 1), co2_fraction=0.5,
                         difficulty=difficulty)
        assert (root / TRUTH_FILE).is_file()
        results[difficulty] = cross_validated(*dataset_features(root))
    return results


def test_separability_band_at_a_small_size(small_benchmark) -> None:
    area = small_benchmark["realistic"]["area"]
    assert 0.45 <= area["co2"] <= 0.8 and 0.45 <= area["ch4"] <= 0.8, area
    assert 0.75 <= area["both"] <= 0.95 and area["both"] - max(area["co2"], area["ch4"]) >= 0.08, area
    assert small_benchmark["easy"]["area"]["both"] >= 0.95  # the easy look: nearly a rule


def test_no_cue_in_background_or_contrast(small_benchmark) -> None:
    """At chance (1/3) give or take what 100 recordings per class allow; the easy look, whose
    contrast grows with the release rate, shows that the test finds a cue."""
    for cue in ("background", "contrast"):
        scores = small_benchmark["realistic"][cue]
        assert max(scores["co2"], scores["ch4"], scores["both"]) <= 0.45, (cue, scores)
    assert small_benchmark["easy"]["contrast"]["both"] > 0.5
