"""Synthetic dual-gas OGI dataset in the real layout (fume.data.layout).

Each *recording* is one gas filmed from one tube of rumen fluid at one pH; it gives one original
frame (fume.data.render) and `augmentations` offline-augmented copies that share its
`original_sample_id` (a tube filmed with both filters has one id for both gases, so
`original_based` pairing finds them).

Physics of the label (fume.data.physics, assumptions read from fume/configs/synthetic/): the
release rate of each gas depends on the pH; a recording's rate is that value times log-normal
per-recording variation; the area of the plume mask is proportional to the rate. CO2 release
jumps when the pH falls into the acidotic range (it separates Acidotic from the rest),
methanogenesis (CH4) collapses below pH 6.2 (it separates Healthy from the rest): neither gas
alone decides the class, both together do, and the per-recording variation blurs both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fume.config import LabelConfig
from fume.contract import GAS
from fume.data.layout import ANNOTATION_COLUMNS, ANNOTATIONS_FILE
from fume.data.physics import PlumePhysics, load_physics
from fume.data.render import Recording, render_scene
from fume.errors import ConfigError
from fume.io import write_csv, write_png

PNG_COMPRESSION = 1  # zlib level 1: ~5x faster than the default 3 and files only ~10 % larger
# What the generator knows of each recording and the frames cannot tell exactly: for checks of
# the benchmark (fume.data.difficulty), never for training.
TRUTH_FILE = "synthetic_truth.csv"
TRUTH_COLUMNS = ["original_sample_id", "gas_type", "ph_value", "class_id", "release_rate", "plume_area", "darkening", "noise_std"]


def augment_copy(frame: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An offline-augmented copy, like the real data's: flip, small rotation, brightness/contrast,
    noise. No scaling, so the plume area (the label's physics) is kept."""
    H, W = frame.shape
    if rng.random() < 0.5:
        frame, mask = frame[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.8:
        rot = cv2.getRotationMatrix2D((W / 2 - 0.5, H / 2 - 0.5), float(rng.uniform(-10, 10)), 1.0)
        frame = cv2.warpAffine(frame, rot, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(mask, rot, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
    image = (frame.astype(np.float32) - 128.0) * gain + 128.0 + offset
    image += rng.uniform(1.0, 4.0) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), np.ascontiguousarray(mask)


# ---------------------------------------------------------------- the dataset

def largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Integer counts summing to `total`, proportional to `weights`."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def allocate_recordings(
    n_originals: int, class_mix: list[float], co2_fraction: float, label_config: LabelConfig
) -> list[Recording]:
    """Recordings per class (class_mix), spread evenly over each class's pH levels, split between
    gases (co2_fraction). At each pH, CH4 recordings reuse the tube ids of CO2 recordings first."""
    recordings: list[Recording] = []
    for class_id, n_class in enumerate(largest_remainder(n_originals, class_mix)):
        phs = label_config.phs_of_class(class_id)
        if not phs:
            if n_class:
                raise ConfigError(f"class {label_config.class_names[class_id]!r} has no pH level in ph_to_class")
            continue
        for ph, n_ph in zip(phs, largest_remainder(n_class, [1.0] * len(phs))):
            n_co2, n_ch4 = largest_remainder(n_ph, [co2_fraction, 1.0 - co2_fraction])
            for gas, n_gas in (("co2", n_co2), ("ch4", n_ch4)):
                for tube in range(n_gas):
                    sample_id = f"ph{ph:.1f}_tube{tube:03d}"
                    recordings.append(Recording(len(recordings), sample_id, gas, ph, class_id))
    return recordings


def _relative_path(kind: str, rec: Recording, aug: int) -> str:
    return f"{kind}/{rec.gas}/ph{rec.ph:.1f}/{rec.original_sample_id}_{rec.gas}_aug{aug:02d}.png"


def _windows_style(path: str, row: int) -> str:
    """Exercise the path normaliser as real CSVs do: a third of the rows as written on Windows
    with the original 'mmseg_dataset\\' prefix, a third with backslashes only."""
    if row % 3 == 0:
        return "mmseg_dataset\\" + path.replace("/", "\\")
    if row % 3 == 1:
        return path.replace("/", "\\")
    return path


def generate_dataset(
    out: str | os.PathLike,
    n_originals: int = 428,
    augmentations: int = 20,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    class_mix: list[float] | tuple[float, ...] = (0.45, 0.026, 0.524),
    co2_fraction: float = 0.69,
    difficulty: str = "realistic",
    physics: PlumePhysics | str | os.PathLike | None = None,
    label_config: LabelConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Write `n_originals * (1 + augmentations)` frames and masks and `annotations.csv` into `out`.
    `difficulty` names the shipped physics ("realistic", the benchmark; "easy", for tests and
    smoke runs); `physics` (a PlumePhysics, a YAML file or a shipped name) replaces it.
    The same arguments give the same bytes. `progress(k)` is called after each recording's k frames.
    Returns the annotation table as written."""
    physics = load_physics(physics, difficulty)
    label_config = label_config or LabelConfig()
    if n_originals < 1 or augmentations < 0:
        raise ConfigError(f"need n_originals >= 1 and augmentations >= 0, got {n_originals} and {augmentations}")
    if len(class_mix) != label_config.num_classes or min(class_mix) < 0 or sum(class_mix) <= 0:
        raise ConfigError(
            f"class_mix {list(class_mix)} must give one non-negative share per class {label_config.class_names}"
        )
    if not 0.0 <= co2_fraction <= 1.0:
        raise ConfigError(f"co2_fraction must be in [0, 1], got {co2_fraction}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out} is not empty; choose another or pass overwrite (--overwrite)")
    for ph in label_config.ph_levels:  # fail before writing anything
        physics.release_rate("co2", ph), physics.release_rate("ch4", ph)

    recordings = allocate_recordings(n_originals, list(class_mix), co2_fraction, label_config)
    rows, truth = [], []
    for rec in recordings:
        rng = np.random.default_rng([seed, rec.index])
        scene = render_scene(rec, size, physics, rng)
        frame, mask = scene.frame, scene.mask
        darkening = scene.darkening()
        truth.append([rec.original_sample_id, rec.gas, rec.ph, rec.class_id, round(scene.rate, 6), round(float((mask == GAS).mean()), 6),
                      round(float(darkening.mean()), 6) if darkening.size else 0.0, round(scene.noise_std, 6)])
        for aug in range(augmentations + 1):
            if aug:
                frame_k, mask_k = augment_copy(frame, mask, rng)
            else:
                frame_k, mask_k = frame, mask
            paths = {}
            for kind, image in (("images", frame_k), ("masks", mask_k)):
                rel = _relative_path(kind, rec, aug)
                write_png(out / rel, image, PNG_COMPRESSION)
                paths[kind] = rel
            row = len(rows)
            rows.append(
                {
                    "frame_path": _windows_style(paths["images"], row),
                    "mask_path": _windows_style(paths["masks"], row),
                    "gas_type": rec.gas,
                    "ph_value": rec.ph,
                    "class_name": label_config.class_names[rec.class_id],
                    "class_id": rec.class_id,
                    "original_sample_id": rec.original_sample_id,
                    "augmentation_id": aug,
                }
            )
        if progress is not None:
            progress(augmentations + 1)
    table = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    write_csv(out / TRUTH_FILE, pd.DataFrame(truth, columns=TRUTH_COLUMNS))
    write_csv(out / ANNOTATIONS_FILE, table, backup=True)
    return table
