"""One synthetic OGI frame and its mask, as a camera would film a tube of fermenting rumen fluid.

A smooth thermal background with vignetting, sometimes the chamber's curved wall (with a black
outside); a thin rod entering from the left or right edge with a bright outlet tip (mask 1); a
turbulent plume leaving the outlet, drawn as a darkening of the background, its mask (2) where
the smoothed column density passes a threshold (the plume's envelope); fixed-pattern stripes and
sensor noise; sometimes burned-in camera text; JPEG compression. What it assumes (rates,
contrast, artefacts) comes from a PlumePhysics (fume.data.physics).

Only the release rate depends on the recording's pH: it sets the plume's area (its length is
searched so the mask covers the target share of the frame). The outlet's width is the tube's,
the eddies have a fixed size in the frame, and the contrast is drawn per frame from a range that
is the same for every class. Everything smooth is drawn at half resolution and upscaled (cheap,
and OGI frames are soft), except the rod, stripes, noise and text.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fume.contract import BACKGROUND, GAS, TUBE
from fume.data.physics import PlumePhysics

DENSITY_THRESHOLD = 0.35  # the mask: smoothed column density (about 1 in the core) above this
TEXT_TOKENS = ("OGI", "GAS", "AUTO", "HSM", "NUC")  # burned-in camera text: generic words, a time, a temperature


@dataclass(frozen=True)
class Recording:
    index: int
    original_sample_id: str
    gas: str
    ph: float
    class_id: int


@dataclass(frozen=True)
class PlumeMotion:
    """How one frame of a sequence differs from the recording's still frame (fume.data.sequence):
    the release rate pulses, the plume swings and its turbulence drifts; the sensor noise is new."""

    rate_scale: float = 1.0
    angle_offset: float = 0.0  # radians
    advection: float = 0.0  # frame heights
    noise_seed: int | None = None


@dataclass(frozen=True)
class Rendered:
    frame: np.ndarray  # uint8 H x W, as written
    mask: np.ndarray  # uint8 H x W: 0 background, 1 tube, 2 gas
    target_area: float  # the plume-mask area the release rate asked for, pixels
    background: np.ndarray  # float32 H x W in [0, 1]: the scene without plume, tube and sensor
    clean: np.ndarray  # float32 H x W: with plume and tube, before noise, text and compression
    noise_std: float  # of the sensor noise, same units
    rate: float  # the recording's release rate (relative, 1.0 = healthy), motion included

    def darkening(self) -> np.ndarray:
        """How much the plume darkens the background (fraction of it) at each gas pixel, before noise."""
        gas = self.mask == GAS
        return 1.0 - self.clean[gas] / np.maximum(self.background[gas], 1e-6)


# ---------------------------------------------------------------- the plume
# Plume coordinates: a along its axis from the outlet, c across, both in pixels. The turbulence
# is sampled in frame heights, so eddies keep their size whatever the plume's length.

@dataclass(frozen=True)
class PlumeShape:
    width: float  # half-width at full spread, in units of the length
    outlet: float  # half-width at the outlet, pixels (the tube's)
    bend: float  # centreline offset c = bend * length * s**2 (s = a / length)
    turbulence: float  # amplitude of the multiplicative density noise
    warp: float  # amplitude of the sideways displacement of the edges
    noise_a: np.ndarray  # small random grids: large eddies, medium, fine
    noise_b: np.ndarray
    noise_c: np.ndarray


_NOISE_A = (-0.3, 2.2)  # the (along, across) window covered by the noise grids, frame heights
_NOISE_C = (-1.5, 1.5)


def _sample_noise(grid: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    gh, gw = grid.shape
    mx = ((a - _NOISE_A[0]) * ((gw - 1) / (_NOISE_A[1] - _NOISE_A[0]))).astype(np.float32)
    my = ((c - _NOISE_C[0]) * ((gh - 1) / (_NOISE_C[1] - _NOISE_C[0]))).astype(np.float32)
    return cv2.remap(grid, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def random_plume_shape(rng: np.random.Generator, outlet: float) -> PlumeShape:
    def grid(cells_c: int, cells_a: int) -> np.ndarray:
        g = rng.standard_normal((cells_c, cells_a)).astype(np.float32)
        return cv2.GaussianBlur(g, (0, 0), 0.8) * 1.6

    return PlumeShape(
        width=float(rng.uniform(0.24, 0.4)),
        outlet=outlet,
        bend=float(rng.uniform(-0.25, 0.25)),
        turbulence=float(rng.uniform(0.2, 0.35)),
        warp=float(rng.uniform(0.15, 0.3)),
        noise_a=grid(12, 10),  # eddies of about a quarter of the frame height
        noise_b=grid(25, 21),
        noise_c=grid(60, 50),
    )


def plume_density(shape: PlumeShape, a: np.ndarray, c: np.ndarray, length: float, height: int, advection: float = 0.0) -> np.ndarray:
    """Column density (about 1 in the core, 0 outside) at plume coordinates (a, c) in pixels, for
    a plume `length` pixels long; `advection` carries the turbulence downstream (frame heights)."""
    an, cn = a * (1.0 / height) - advection, c * (1.0 / height)
    n1 = _sample_noise(shape.noise_a, an, cn)
    n2 = _sample_noise(shape.noise_b, an, cn) + 0.5 * _sample_noise(shape.noise_c, an, cn)
    s = a * (1.0 / length)
    grow = np.clip(s / 0.65, 0.0, 1.0) ** 0.6
    half_width = shape.outlet + (shape.width * length - shape.outlet) * grow
    across = (c - shape.bend * length * s * s) / half_width + shape.warp * n2
    start = 0.5 + 0.5 * np.tanh(a * (1.0 / (0.01 * height)))  # gas appears at the outlet (overflow-free step)
    fade = np.exp(-((np.maximum(s - 0.55, 0.0) / 0.38) ** 2))  # and thins out downstream
    return start * fade * np.exp(-(across**2)) * (1.0 + shape.turbulence * n1)


@dataclass(frozen=True)
class _Grid:
    """Pixel centres of a w x h grid over a W x H frame, in plume coordinates."""

    a: np.ndarray
    c: np.ndarray

    @classmethod
    def of(cls, w: int, h: int, size: tuple[int, int], outlet: np.ndarray, theta: float) -> _Grid:
        W, H = size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        px = (xx + 0.5) * float(W / w) - float(outlet[0] + 0.5)
        py = (yy + 0.5) * float(H / h) - float(outlet[1] + 0.5)
        cos_t, sin_t = float(np.cos(theta)), float(np.sin(theta))
        return cls(px * cos_t + py * sin_t, py * cos_t - px * sin_t)


def _smoothed(density: np.ndarray, sigma: float) -> np.ndarray:
    """The density an annotator's outline follows (smooth, as hand-drawn masks); sigma in pixels."""
    return cv2.GaussianBlur(density, (0, 0), sigma) if sigma >= 0.3 else density


def _plume_length(shape: PlumeShape, grid: _Grid, inside: np.ndarray, sigma: float, target: float, size: tuple[int, int], advection: float) -> float:
    """The length (pixels) whose mask covers `target` of the frame, by bisection on a coarse grid."""
    W, H = size
    lo, hi = np.log(0.03 * H), np.log(4.0 * W)
    for _ in range(11):
        mid = 0.5 * (lo + hi)
        density = plume_density(shape, grid.a, grid.c, float(np.exp(mid)), H, advection)
        if ((_smoothed(density, sigma) > DENSITY_THRESHOLD) & inside).mean() < target:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


# ---------------------------------------------------------------- the scene

def _smooth_field(rng: np.random.Generator, w: int, h: int, cells: tuple[int, int]) -> np.ndarray:
    grid = rng.standard_normal((cells[1], cells[0])).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _chamber_wall(rng: np.random.Generator, physics: PlumePhysics, co2: bool, side: int, w: int, h: int):
    """(how the background changes, where the inside is: 1 inside, 0 outside) for the chamber's wall
    crossing the side opposite the tube, or (None, None) when the view has no wall."""
    if rng.random() >= physics.wall_probability:
        return None, None
    dark = rng.random() < physics.dark_exterior_probability
    radius = rng.uniform(1.2, 2.2) * h
    cx = w / 2 + side * (radius - w * rng.uniform(0.36, 0.47))  # wall on the side away from the tube
    cy = h * rng.uniform(0.2, 0.8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    outside = np.clip((dist - radius) / 1.2, 0.0, 1.0)
    rim = np.exp(-(((dist - radius) / 1.5) ** 2))
    level = rng.uniform(0.02, 0.07) if dark else None
    shift = rng.uniform(0.12, 0.3) * (1 if not co2 else -0.6)
    return (outside, rim, level, shift), 1.0 - outside


def render_scene(
    rec: Recording, size: tuple[int, int], physics: PlumePhysics, rng: np.random.Generator, motion: PlumeMotion | None = None
) -> Rendered:
    """The original frame of one recording and everything known about it. With `motion`, one
    frame of a sequence: the same scene (the same rng draws), the plume moved."""
    motion = motion or PlumeMotion()
    W, H = size
    w, h = max(W // 2, 8), max(H // 2, 8)  # render resolution
    cw, ch = max(W // 8, 8), max(H // 8, 6)  # where the plume's length is searched
    co2 = rec.gas == "co2"

    # Background: level, thermal gradient, slow blobs, vignetting; the levels differ by gas, not class.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xx / w - 0.5, yy / h - 0.5
    level = rng.uniform(0.68, 0.86) if co2 else rng.uniform(0.24, 0.42)
    angle = rng.uniform(0, 2 * np.pi)
    bg = level + rng.uniform(0.03, 0.10) * (np.cos(angle) * xn + np.sin(angle) * yn)
    bg = bg + rng.uniform(0.01, 0.035) * _smooth_field(rng, w, h, (4, 3))
    vignette = rng.uniform(0.08, 0.2) if co2 else rng.uniform(0.25, 0.45)
    bg = bg * (1.0 - vignette * (xn**2 + yn**2) * 1.6)

    # Tube: from the left or right edge to the outlet, roughly horizontal.
    side = 1 if rng.random() < 0.5 else -1  # +1: enters from the right edge
    wall, inside = _chamber_wall(rng, physics, co2, side, w, h)
    if wall is not None:
        outside, rim, dark_level, shift = wall
        bg = bg * inside + dark_level * outside if dark_level is not None else bg + outside * shift
        bg = bg - 0.06 * rim
        inside_r = inside > 0.5
        inside_c = cv2.resize(inside, (cw, ch), interpolation=cv2.INTER_AREA) > 0.5
    else:
        inside_r, inside_c = np.ones((h, w), bool), np.ones((ch, cw), bool)
    tube_len = rng.uniform(0.05, 0.14) * W
    tube_w = rng.uniform(0.022, 0.034) * H
    tilt = rng.uniform(-0.2, 0.2)
    outlet_y = rng.uniform(0.3, 0.7) * H
    axis = np.array([-side * np.cos(tilt), np.sin(tilt)])  # pointing into the frame
    entry = np.array([W - 1 if side > 0 else 0, outlet_y - axis[1] * tube_len])
    outlet = entry + axis * tube_len

    # Plume: its mask covers the share of the frame that the recording's release rate asks for.
    rate = physics.release_rate(rec.gas, rec.ph) * float(np.exp(rng.normal(0.0, physics.recording_noise))) * motion.rate_scale
    target = min(physics.area[rec.gas] * rate, physics.max_area)
    shape = random_plume_shape(rng, outlet=tube_w / 2 * float(rng.uniform(0.7, 1.0)))
    theta = float(np.arctan2(axis[1], axis[0]) + rng.uniform(-0.3, 0.3) + motion.angle_offset)
    sigma = physics.mask_smoothing * H  # full-resolution pixels
    length = _plume_length(shape, _Grid.of(cw, ch, size, outlet, theta), inside_c, sigma * ch / H, target, size, motion.advection)
    grid = _Grid.of(w, h, size, outlet, theta)
    density = plume_density(shape, grid.a, grid.c, length, H, motion.advection)
    smooth = _smoothed(density, sigma * h / H)
    envelope = (smooth > DENSITY_THRESHOLD) & inside_r  # the mask's region, at render resolution

    # Darkening: nothing in the envelope's least dense part, rising to the core.
    contrast = rng.uniform(*physics.contrast[rec.gas]) * min(rate, 2.0) ** physics.contrast_rate_exponent
    ramp = np.zeros_like(density)
    if envelope.any():
        low, high = np.quantile(density[envelope], [physics.envelope, 0.98])
        ramp = np.clip((density - low) / max(high - low, 1e-6), 0.0, 1.0)
        ramp = ramp * ramp * (3 - 2 * ramp) * envelope

    # Up to full resolution: the mask (the rod in front of the gas), then the darkening scaled so
    # its mean over the final gas mask is the frame's contrast (drawn alike for every class).
    background = cv2.resize(bg.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    ramp = cv2.resize(ramp.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    smooth_full = cv2.resize(smooth, (W, H), interpolation=cv2.INTER_LINEAR)
    inside_full = cv2.resize(inside_r.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
    mask = np.where((smooth_full > DENSITY_THRESHOLD) & inside_full, GAS, BACKGROUND).astype(np.uint8)
    tube = _tube(rng, (W, H), entry, outlet, axis, tube_len, tube_w)
    mask[tube.box][tube.body >= 0.5] = TUBE
    gas = mask == GAS
    mean_ramp = float(ramp[gas].mean()) if gas.any() else 0.0
    image = background * (1.0 - np.minimum(ramp * (contrast / mean_ramp), 0.95)) if mean_ramp > 0 else background.copy()
    tube.draw(image)
    clean = image.copy()

    # Sensor: fixed-pattern column stripes and noise; then the camera's text and compression.
    stripes = cv2.GaussianBlur(rng.standard_normal((1, W)).astype(np.float32), (0, 0), 1.0)
    image += rng.uniform(0.002, 0.007) * stripes
    noise_rng = rng if motion.noise_seed is None else np.random.default_rng(motion.noise_seed)
    noise = noise_rng.standard_normal((H, W), dtype=np.float32)
    noise_std = float(rng.uniform(*physics.noise))
    image += noise_std * noise
    if rng.random() < physics.text_probability:
        _burn_in_text(image, rng)
    image *= 255.0
    image += 0.5
    frame = np.clip(image, 0, 255).astype(np.uint8)
    if physics.jpeg_quality is not None:
        quality = int(rng.integers(physics.jpeg_quality[0], physics.jpeg_quality[1] + 1))
        frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)
    return Rendered(frame, mask, target * W * H, background, clean, noise_std, rate)


def render_recording(rec: Recording, size: tuple[int, int], physics: PlumePhysics, rng: np.random.Generator, motion: PlumeMotion | None = None):
    """(frame, mask, target plume area in pixels) of one recording (see render_scene)."""
    r = render_scene(rec, size, physics, rng, motion)
    return r.frame, r.mask, r.target_area


@dataclass(frozen=True)
class _Tube:
    """The dark rod with its bright outlet tip: coverage (0..1) in its bounding box."""

    box: tuple[slice, slice]
    body: np.ndarray
    tip: np.ndarray
    rod_value: float
    tip_value: float

    def draw(self, image: np.ndarray) -> None:
        roi = image[self.box] * (1 - self.body) + self.rod_value * self.body
        image[self.box] = roi * (1 - self.tip) + self.tip_value * self.tip


def _tube(rng: np.random.Generator, size: tuple[int, int], entry, outlet, axis, tube_len: float, tube_w: float) -> _Tube:
    W, H = size
    normal = np.array([-axis[1], axis[0]]) * tube_w / 2
    far = entry - axis * tube_w  # start beyond the image edge
    body = np.array([far + normal, outlet + normal, outlet - normal, far - normal])
    tip_start = outlet - axis * tube_len * rng.uniform(0.25, 0.4)
    tip = np.array([tip_start + normal, outlet + normal, outlet - normal, tip_start - normal])
    # Only the rod's bounding box is drawn (a full-frame blend costs more than the rest).
    x0, y0 = np.maximum(np.floor(body.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(body.max(0)).astype(int) + 3, (W, H))
    shift = 4  # sub-pixel precision for the polygon corners
    layers = []
    for polygon in (body, tip):
        layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
        corners = np.round((polygon - (x0, y0)) * 2**shift).astype(np.int32)
        cv2.fillConvexPoly(layer, corners, 255, cv2.LINE_AA, shift)
        layers.append(layer.astype(np.float32) / 255.0)
    return _Tube((slice(y0, y1), slice(x0, x1)), layers[0], layers[1], rng.uniform(0.08, 0.2), rng.uniform(0.85, 0.98))


def _burn_in_text(image: np.ndarray, rng: np.random.Generator) -> None:
    """A camera's overlay (a word, a time or a temperature) in one corner, in place: on the frame
    only, the mask stays the truth."""
    H, W = image.shape
    kind = rng.integers(3)
    if kind == 0:
        text = str(rng.choice(TEXT_TOKENS))
    elif kind == 1:
        text = f"{rng.integers(24):02d}:{rng.integers(60):02d}:{rng.integers(60):02d}"
    else:
        text = f"{rng.uniform(15, 35):.1f}C"
    scale = max(0.3, H / 480 * rng.uniform(0.45, 0.7))
    thickness = 1 if H < 360 else 2
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin = max(2, int(0.02 * H))
    right, bottom = rng.random() < 0.5, rng.random() < 0.6
    x = W - tw - margin if right else margin
    y = H - margin - base if bottom else margin + th
    layer = np.zeros((H, W), np.uint8)
    cv2.putText(layer, text, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    alpha = layer.astype(np.float32) / 255.0
    value = rng.uniform(0.9, 1.0) if rng.random() < 0.7 else rng.uniform(0.0, 0.08)
    image *= 1 - alpha
    image += value * alpha
