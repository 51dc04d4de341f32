"""Short, temporally coherent synthetic recordings for testing video mode (`fume generate --sequence`).

One CO2 and one CH4 recording of a tube, rendered as fume.data.generate's frames (fume.data.render): the
scene (background, tube, plume shape) stays, while from frame to frame the release rate pulses,
the plume swings a little, its turbulence drifts downstream and the sensor noise is new. A list
of pH levels splits the sequence into equal parts (e.g. 6.5 then 5.3: the rumen turns acidotic
half way), with the scene unchanged.

OUT/
  co2/frame_00000.png ...  ch4/frame_00000.png ...    frames (8-bit gray PNG)
  masks/co2/...  masks/ch4/...                        masks 0/1/2
  co2.mp4  ch4.mp4                                    the frames as H.264 video (lossy)
  sequence.csv                                        a paired table (one row per frame pair) + frame, time_s
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fume.config import LabelConfig
from fume.contract import GASES
from fume.data.generate import PNG_COMPRESSION
from fume.data.physics import PlumePhysics, load_physics
from fume.data.render import PlumeMotion, Recording, render_recording
from fume.errors import ConfigError
from fume.io import VideoWriter, write_csv, write_png

SEQUENCE_FILE = "sequence.csv"
PULSE_PERIOD_S = 2.0  # the release rate pulses +-25 % with this period
PULSE_DEPTH = 0.25
SWING_PERIOD_S = 5.0  # the plume swings +-0.12 rad with this period
SWING_RADIANS = 0.12
DRIFT_PER_S = 0.1  # turbulence carried downstream, frame heights per second


def frame_motion(time_s: float, gas_index: int, seed: int, frame: int) -> PlumeMotion:
    phase = 1.3 * gas_index + 0.7 * seed  # the two gases do not pulse in step
    return PlumeMotion(
        rate_scale=1.0 + PULSE_DEPTH * float(np.sin(2 * np.pi * time_s / PULSE_PERIOD_S + phase)),
        angle_offset=SWING_RADIANS * float(np.sin(2 * np.pi * time_s / SWING_PERIOD_S + 2 * phase)),
        advection=DRIFT_PER_S * time_s,
        noise_seed=int(np.random.SeedSequence([seed, gas_index, frame]).generate_state(1)[0]),
    )


def ph_schedule(phs: Sequence[float], n_frames: int) -> list[float]:
    """The pH of each frame: the levels in order, each for an equal share of the frames."""
    if not phs:
        raise ConfigError("--ph needs at least one pH level")
    if n_frames < len(phs):
        raise ConfigError(f"{n_frames} frames cannot hold {len(phs)} pH levels; ask for more frames")
    return [float(phs[i * len(phs) // n_frames]) for i in range(n_frames)]


def parse_ph_list(text: str) -> list[float]:
    """'6.5,5.3' -> [6.5, 5.3]."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--ph {text!r} must be pH levels separated by commas, e.g. 6.5,5.3") from None


def generate_sequence(
    out: str | os.PathLike,
    n_frames: int = 60,
    size: tuple[int, int] = (640, 480),
    fps: float = 10.0,
    ph: float | Sequence[float] = 6.5,
    seed: int = 0,
    videos: bool = True,
    difficulty: str = "realistic",
    physics: PlumePhysics | str | os.PathLike | None = None,
    label_config: LabelConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Write a CO2 + CH4 sequence into `out` (layout in the module docstring); returns sequence.csv's table.
    `difficulty` and `physics` as for fume.data.generate.generate_dataset."""
    physics = load_physics(physics, difficulty)
    label_config = label_config or LabelConfig()
    if n_frames < 1:
        raise ConfigError(f"a sequence needs at least one frame, got {n_frames}")
    if fps <= 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    phs = [float(ph)] if isinstance(ph, (int, float)) else [float(p) for p in ph]
    schedule = ph_schedule(phs, n_frames)
    classes = {p: label_config.class_of_ph(p) for p in phs}  # DataError for a pH not in the mapping
    for p in phs:
        physics.release_rate("co2", p), physics.release_rate("ch4", p)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out} is not empty; choose another or pass overwrite (--overwrite)")

    rows = []
    for frame_index, frame_ph in enumerate(schedule):
        time_s = frame_index / fps
        row: dict = {"sample_id": f"frame{frame_index:05d}", "frame": frame_index, "time_s": round(time_s, 6)}
        for g, gas in enumerate(GASES):
            rec = Recording(g, f"sequence_{gas}", gas, frame_ph, classes[frame_ph])
            rng = np.random.default_rng([seed, g])  # the same draws every frame: the same scene
            image, mask, _ = render_recording(rec, size, physics, rng, frame_motion(time_s, g, seed, frame_index))
            for kind, array in (("frame", image), ("mask", mask)):
                rel = f"{gas}/frame_{frame_index:05d}.png" if kind == "frame" else f"masks/{gas}/frame_{frame_index:05d}.png"
                write_png(out / rel, array, PNG_COMPRESSION)
                row[f"{gas}_{kind}"] = rel
        row.update(
            ph_value=frame_ph, class_id=classes[frame_ph], class_name=label_config.class_names[classes[frame_ph]],
            is_paired=True, missing_modality="",
        )
        rows.append(row)
        if progress is not None:
            progress(1)
    columns = ["sample_id", "frame", "time_s", "co2_frame", "co2_mask", "ch4_frame", "ch4_mask", "ph_value", "class_id",
               "class_name", "is_paired", "missing_modality"]
    table = pd.DataFrame(rows, columns=columns)
    if videos:
        for gas in GASES:
            write_gray_video(out / f"{gas}.mp4", [out / p for p in table[f"{gas}_frame"]], fps)
    write_csv(out / SEQUENCE_FILE, table, backup=True)
    return table


def write_gray_video(path: Path, frames: list[Path], fps: float) -> None:
    """Encode gray PNG frames as a video (written under a temporary name, renamed when complete)."""
    writer = VideoWriter(path, fps)
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(cv2.imread(str(frame), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR))
    except BaseException:
        writer.abort()
        raise
    writer.close()
