"""The assumptions behind FUME's synthetic frames, read from a YAML file (fume/configs/synthetic/).

`realistic` (the default) is the benchmark: faint plumes, masks that draw the plume's envelope,
camera artefacts, and no class cue but the release rate. `easy` is the earlier look (strong,
self-evident plumes, clean frames, contrast growing with the rate): for tests and smoke runs
that need a model to learn in seconds. A user's file of the same schema is accepted
(`fume generate --physics FILE`). The numbers are assumptions that make a plausible benchmark,
not measurements.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fume.config import config_file, format_validation_error, read_yaml, shipped_configs
from fume.errors import ConfigError

DIFFICULTIES = ("realistic", "easy")  # the shipped physics files, fume/configs/synthetic/<name>.yaml
Gas = Literal["co2", "ch4"]
Range = tuple[float, float]


class PlumePhysics(BaseModel):
    """How the pH drives the plumes, and how the frames look. Rates are relative (1.0 = healthy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release: dict[Gas, dict[float, float]] = Field(description="release rate per gas and pH level")
    recording_noise: float = Field(ge=0, le=2, description="sigma of the log-normal per-recording rate variation")
    area: dict[Gas, float] = Field(description="plume-mask fraction of the frame at rate 1.0, per gas")
    max_area: float = Field(0.6, gt=0, le=1, description="the plume-mask fraction is capped here")
    contrast: dict[Gas, Range] = Field(description="mean darkening inside the mask (fraction of the background), per gas")
    contrast_rate_exponent: float = Field(0.0, ge=0, le=1, description="contrast x min(rate, 2) ** this; 0: no cue")
    envelope: float = Field(ge=0, lt=1, description="share of the mask (its least dense part) that is not darkened")
    mask_smoothing: float = Field(ge=0, le=0.1, description="blur of the density the mask is drawn from, fraction of the height")
    noise: Range = Field(description="sensor noise standard deviation (fraction of full scale)")
    jpeg_quality: tuple[int, int] | None = Field(description="JPEG compression quality range; null: none")
    text_probability: float = Field(ge=0, le=1, description="burned-in camera text in a corner")
    wall_probability: float = Field(ge=0, le=1, description="the chamber's curved wall crosses one side")
    dark_exterior_probability: float = Field(ge=0, le=1, description="given a wall: the outside of the chamber is black")

    @model_validator(mode="after")
    def _consistent(self) -> PlumePhysics:
        for name in ("release", "area", "contrast"):
            missing = {"co2", "ch4"} - set(getattr(self, name))
            if missing:
                raise ValueError(f"{name} needs a value for both gases, missing {sorted(missing)}")
        for gas, rates in self.release.items():
            if any(r <= 0 for r in rates.values()):
                raise ValueError(f"release.{gas}: rates must be positive, got {rates}")
        ranges = {f"contrast.{g}": r for g, r in self.contrast.items()} | {"noise": self.noise}
        if self.jpeg_quality is not None:
            ranges["jpeg_quality"] = self.jpeg_quality
        for key, (lo, hi) in ranges.items():
            if not 0 <= lo <= hi or (key != "jpeg_quality" and hi >= 1) or hi > 100:
                raise ValueError(f"{key} must be a range [low, high] with 0 <= low <= high (< 1 for fractions), got [{lo}, {hi}]")
        return self

    def release_rate(self, gas: str, ph: float) -> float:
        table = self.release[gas]
        for level, rate in table.items():
            if abs(level - ph) < 1e-2:
                return rate
        raise ConfigError(f"the synthetic physics has no {gas} release rate for pH {ph}; it covers {sorted(table)}")


def load_physics(physics: PlumePhysics | str | os.PathLike | None = None, difficulty: str = "realistic") -> PlumePhysics:
    """`physics` as given, else read from a file (or a shipped name); None: the shipped `difficulty`."""
    if isinstance(physics, PlumePhysics):
        return physics
    if physics is None:
        if difficulty not in DIFFICULTIES:
            raise ConfigError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
        physics = difficulty
    path = config_file(physics, shipped_configs("synthetic"), what="synthetic physics")
    raw = read_yaml(path, what="synthetic physics file")
    try:
        return PlumePhysics.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(Path(path)), PlumePhysics)) from None
