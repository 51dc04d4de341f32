"""Synthetic dual-gas OGI dataset in the real layout (fume.data.layout).

Each *recording* is one gas filmed from one tube of rumen fluid at one pH; it gives one original
frame and `augmentations` offline-augmented copies that share its `original_sample_id` (a tube
filmed with both filters has one id for both gases, so `original_based` pairing finds them).

Physics of the label (`PlumePhysics`): the release rate of each gas depends on the pH; a
recording's rate is that value times log-normal per-recording noise; the area of the plume mask
is proportional to the rate. CO2 release jumps when the pH falls into the acidotic range (it
separates Acidotic from the rest), methanogenesis (CH4) collapses below pH 6.2 (it separates
Healthy from the rest): neither gas alone decides the class, both together do.

Rendering: a smooth thermal background with vignetting, fixed-pattern stripes, sensor noise and
sometimes the curved edge of the chamber; a thin rod entering from the left or right edge with a
bright outlet tip (mask 1); a turbulent plume leaving the outlet, drawn as attenuation of the
background, its mask (2) where the column density passes a threshold. Everything is drawn at half
resolution and upscaled (cheap, and OGI frames are soft), except the rod, stripes and noise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from fume.config import LabelConfig
from fume.contract import BACKGROUND, GAS, TUBE
from fume.data.layout import ANNOTATION_COLUMNS, ANNOTATIONS_FILE
from fume.errors import ConfigError
from fume.io import write_csv, write_png

PNG_COMPRESSION = 1  # zlib level 1: ~5x faster than the default 3 and files only ~10 % larger


class PlumePhysics(BaseModel):
    """How pH drives the plumes. Release rates are relative (1.0 = a healthy recording)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    co2_release: dict[float, float] = Field(
        default_factory=lambda: {6.5: 1.0, 6.2: 1.02, 5.9: 1.06, 5.6: 1.95, 5.3: 2.1, 5.0: 2.25},
        description="CO2 release rate per pH: flat while healthy/transitional, steep rise when acidotic",
    )
    ch4_release: dict[float, float] = Field(
        default_factory=lambda: {6.5: 1.0, 6.2: 0.97, 5.9: 0.48, 5.6: 0.46, 5.3: 0.45, 5.0: 0.44},
        description="CH4 release rate per pH: methanogenesis collapses below pH 6.2",
    )
    recording_noise: float = Field(0.12, ge=0, description="sigma of the log-normal per-recording rate noise")
    co2_area: float = Field(0.085, gt=0, lt=1, description="plume-mask fraction of the frame at rate 1.0 (CO2)")
    ch4_area: float = Field(0.17, gt=0, lt=1, description="plume-mask fraction of the frame at rate 1.0 (CH4)")
    co2_contrast: tuple[float, float] = (0.30, 0.42)  # darkening of the plume core, CO2 absorbs strongly
    ch4_contrast: tuple[float, float] = (0.20, 0.28)
    density_threshold: float = Field(0.5, gt=0, lt=1, description="column density (peak 1) where the mask starts")

    def release(self, gas: str, ph: float) -> float:
        table = self.co2_release if gas == "co2" else self.ch4_release
        for level, rate in table.items():
            if abs(level - ph) < 1e-2:
                return rate
        raise ConfigError(f"PlumePhysics.{gas}_release has no rate for pH {ph}; it covers {sorted(table)}")


@dataclass(frozen=True)
class Recording:
    index: int
    original_sample_id: str
    gas: str
    ph: float
    class_id: int


# ---------------------------------------------------------------- plume shape (plume coordinates)
# The plume is defined in coordinates u (along its axis, outlet at 0, length ~1) and v (across),
# so its mask area in pixels is exactly scale**2 times its area in (u, v): the size can be set to
# a target area without rendering twice.

@dataclass(frozen=True)
class PlumeShape:
    width: float  # half-width at full spread, in units of the length
    outlet_width: float
    bend: float  # centreline offset v = bend * u**2
    turbulence: float  # amplitude of the multiplicative density noise
    warp: float  # amplitude of the sideways displacement of the edges
    noise_a: np.ndarray  # small random grids sampled at (u, v): the turbulence
    noise_b: np.ndarray
    noise_c: np.ndarray  # finer eddies


_NOISE_U = (-0.3, 1.7)  # the (u, v) window covered by the noise grids
_NOISE_V = (-1.0, 1.0)


def _sample_noise(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    gh, gw = grid.shape
    mx = ((u - _NOISE_U[0]) / (_NOISE_U[1] - _NOISE_U[0]) * (gw - 1)).astype(np.float32)
    my = ((v - _NOISE_V[0]) / (_NOISE_V[1] - _NOISE_V[0]) * (gh - 1)).astype(np.float32)
    return cv2.remap(grid, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def plume_density(shape: PlumeShape, u: np.ndarray, v: np.ndarray, advection: float = 0.0) -> np.ndarray:
    """Column density (about 1 in the core, 0 outside) at plume coordinates (u, v); `advection`
    carries the turbulence downstream by that many plume lengths (for sequences)."""
    ut = u - advection
    n1 = _sample_noise(shape.noise_a, ut, v)
    n2 = _sample_noise(shape.noise_b, ut, v) + 0.5 * _sample_noise(shape.noise_c, ut, v)
    grow = np.clip(u / 0.65, 0.0, 1.0) ** 0.6
    half_width = shape.outlet_width + (shape.width - shape.outlet_width) * grow
    across = (v - shape.bend * u * u) / half_width + shape.warp * n2
    start = 0.5 + 0.5 * np.tanh(u / 0.03)  # gas appears at the outlet (a logistic step, overflow-free)
    fade = np.exp(-((np.maximum(u - 0.55, 0.0) / 0.38) ** 2))  # and thins out downstream
    return start * fade * np.exp(-(across**2)) * (1.0 + shape.turbulence * n1)


def random_plume_shape(rng: np.random.Generator) -> PlumeShape:
    def grid(h: int, w: int) -> np.ndarray:
        g = rng.standard_normal((h, w)).astype(np.float32)
        return cv2.GaussianBlur(g, (0, 0), 0.8) * 1.6

    return PlumeShape(
        width=float(rng.uniform(0.22, 0.36)),
        outlet_width=float(rng.uniform(0.025, 0.045)),
        bend=float(rng.uniform(-0.25, 0.25)),
        turbulence=float(rng.uniform(0.2, 0.35)),
        warp=float(rng.uniform(0.15, 0.3)),
        noise_a=grid(9, 11),
        noise_b=grid(14, 17),
        noise_c=grid(30, 36),
    )


def plume_area_uv(shape: PlumeShape, threshold: float, step: float = 0.015) -> float:
    """Area of the plume mask in (u, v) units, on a grid of `step`."""
    u, v = np.meshgrid(
        np.arange(_NOISE_U[0], _NOISE_U[1], step, dtype=np.float32),
        np.arange(_NOISE_V[0], _NOISE_V[1], step, dtype=np.float32),
    )
    return float((plume_density(shape, u, v) > threshold).sum()) * step * step


# ---------------------------------------------------------------- one frame

@dataclass(frozen=True)
class PlumeMotion:
    """How one frame of a sequence differs from the recording's still frame (fume.data.sequence):
    the release rate pulses, the plume swings and its turbulence drifts; the sensor noise is new."""

    rate_scale: float = 1.0
    angle_offset: float = 0.0  # radians
    advection: float = 0.0  # plume lengths
    noise_seed: int | None = None


def _smooth_field(rng: np.random.Generator, w: int, h: int, cells: tuple[int, int]) -> np.ndarray:
    grid = rng.standard_normal((cells[1], cells[0])).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def render_recording(
    rec: Recording, size: tuple[int, int], physics: PlumePhysics, rng: np.random.Generator, motion: PlumeMotion | None = None
):
    """The original frame (uint8 H x W), its mask and the plume's target area of one recording.
    With `motion`, one frame of a sequence: same scene (same rng draws), moved plume."""
    motion = motion or PlumeMotion()
    W, H = size
    w, h = max(W // 2, 8), max(H // 2, 8)  # render resolution
    co2 = rec.gas == "co2"

    # Background: level, thermal gradient, slow blobs, vignetting.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xx / w - 0.5, yy / h - 0.5
    level = rng.uniform(0.68, 0.86) if co2 else rng.uniform(0.24, 0.42)
    angle = rng.uniform(0, 2 * np.pi)
    bg = level + rng.uniform(0.03, 0.10) * (np.cos(angle) * xn + np.sin(angle) * yn)
    bg = bg + rng.uniform(0.01, 0.035) * _smooth_field(rng, w, h, (4, 3))
    vignette = rng.uniform(0.08, 0.2) if co2 else rng.uniform(0.25, 0.45)
    bg = bg * (1.0 - vignette * (xn**2 + yn**2) * 1.6)
    if rng.random() < 0.35:  # the curved wall of the chamber crossing one side of the view
        side = rng.choice([-1.0, 1.0])
        radius = rng.uniform(1.2, 2.2) * h
        cx = w / 2 - side * (radius - w * rng.uniform(0.38, 0.48))
        cy = h * rng.uniform(0.2, 0.8)
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        outside = np.clip((dist - radius) / 1.2, 0.0, 1.0)
        rim = np.exp(-(((dist - radius) / 1.5) ** 2))
        bg = bg + outside * rng.uniform(0.12, 0.3) * (1 if not co2 else -0.6) - 0.06 * rim

    # Tube: from the left or right edge to the outlet, roughly horizontal.
    side = 1 if rng.random() < 0.5 else -1  # +1: enters from the right edge
    tube_len = rng.uniform(0.08, 0.16) * W
    tube_w = rng.uniform(0.026, 0.036) * H
    tilt = rng.uniform(-0.2, 0.2)
    outlet_y = rng.uniform(0.3, 0.7) * H
    axis = np.array([-side * np.cos(tilt), np.sin(tilt)])  # pointing into the frame
    entry = np.array([W - 1 if side > 0 else 0, outlet_y - axis[1] * tube_len])
    outlet = entry + axis * tube_len

    # Plume: drifts from the outlet into the frame, area set by the recording's release rate.
    rate = physics.release(rec.gas, rec.ph) * float(np.exp(rng.normal(0.0, physics.recording_noise))) * motion.rate_scale
    target_area = (physics.co2_area if co2 else physics.ch4_area) * rate * W * H
    shape = random_plume_shape(rng)
    scale = np.sqrt(target_area / plume_area_uv(shape, physics.density_threshold))  # pixels per unit u
    theta = np.arctan2(axis[1], axis[0]) + rng.uniform(-0.3, 0.3) + motion.angle_offset
    # Coordinates of every render pixel in plume units (render pixel centres -> full-res pixels).
    # (Python floats keep the arrays float32.)
    ox, oy, cos_t, sin_t = float(outlet[0]) + 0.5, float(outlet[1]) + 0.5, float(np.cos(theta)), float(np.sin(theta))
    px, py = (xx + 0.5) * (W / w) - ox, (yy + 0.5) * (H / h) - oy
    u = (px * cos_t + py * sin_t) * float(1 / scale)
    v = (py * cos_t - px * sin_t) * float(1 / scale)
    density = plume_density(shape, u, v, motion.advection)
    thr = physics.density_threshold
    contrast = rng.uniform(*(physics.co2_contrast if co2 else physics.ch4_contrast)) * min(rate, 2.0) ** 0.25
    visible = np.clip((density - 0.15) / (0.9 - 0.15), 0.0, 1.0)
    visible = visible * visible * (3 - 2 * visible)  # smoothstep: soft halo, dense core
    image = bg * (1.0 - contrast * visible)

    # Up to full resolution; then the sharp parts.
    image = cv2.resize(image.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    density_full = cv2.resize(density, (W, H), interpolation=cv2.INTER_LINEAR)
    mask = np.where(density_full > thr, GAS, BACKGROUND).astype(np.uint8)

    normal = np.array([-axis[1], axis[0]]) * tube_w / 2
    far = entry - axis * tube_w  # start beyond the image edge
    body = np.array([far + normal, outlet + normal, outlet - normal, far - normal])
    tip_start = outlet - axis * tube_len * rng.uniform(0.25, 0.4)
    tip = np.array([tip_start + normal, outlet + normal, outlet - normal, tip_start - normal])
    # Draw the rod in its bounding box only (a full-frame blend costs more than the rest).
    x0, y0 = np.maximum(np.floor(body.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(body.max(0)).astype(int) + 3, (W, H))
    shift = 4  # sub-pixel precision for the polygon corners
    layers = []
    for polygon in (body, tip):
        layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
        corners = np.round((polygon - (x0, y0)) * 2**shift).astype(np.int32)
        cv2.fillConvexPoly(layer, corners, 255, cv2.LINE_AA, shift)
        layers.append(layer)
    tube_alpha, tip_alpha = (layer.astype(np.float32) / 255.0 for layer in layers)
    rod_value = rng.uniform(0.08, 0.2)
    tip_value = rng.uniform(0.85, 0.98)
    roi = image[y0:y1, x0:x1]
    roi = roi * (1 - tube_alpha) + rod_value * tube_alpha
    image[y0:y1, x0:x1] = roi * (1 - tip_alpha) + tip_value * tip_alpha
    mask[y0:y1, x0:x1][layers[0] >= 128] = TUBE  # the rod is in front of the gas

    # Sensor: fixed-pattern column stripes and noise.
    stripes = cv2.GaussianBlur(rng.standard_normal((1, W)).astype(np.float32), (0, 0), 1.0)
    image += rng.uniform(0.002, 0.007) * stripes
    noise_rng = rng if motion.noise_seed is None else np.random.default_rng(motion.noise_seed)
    noise = noise_rng.standard_normal((H, W), dtype=np.float32)
    image += rng.uniform(0.006, 0.016) * noise
    image *= 255.0
    image += 0.5
    frame = np.clip(image, 0, 255).astype(np.uint8)
    return frame, mask, target_area


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
    physics: PlumePhysics | None = None,
    label_config: LabelConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Write `n_originals * (1 + augmentations)` frames and masks and `annotations.csv` into `out`.
    The same arguments give the same bytes. `progress(k)` is called after each recording's k frames.
    Returns the annotation table as written."""
    physics = physics or PlumePhysics()
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
        physics.release("co2", ph), physics.release("ch4", ph)

    recordings = allocate_recordings(n_originals, list(class_mix), co2_fraction, label_config)
    rows = []
    for rec in recordings:
        rng = np.random.default_rng([seed, rec.index])
        frame, mask, _ = render_recording(rec, size, physics, rng)
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
    write_csv(out / ANNOTATIONS_FILE, table, backup=True)
    return table
