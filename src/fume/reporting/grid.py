"""Experiment grids: a base config plus named variants of dotted overrides, expanded over seeds.

A grid file (or a shipped grid by name: baselines, ablations, leakage; fume/configs/experiments/):

    name: ablations                  # results.csv rows carry it; runs go to OUT/runs/<name>/...
    kind: ablation                   # comparison | ablation | leakage: which tables the report makes
    base: ../fume_fastscnn.yaml      # relative to the grid file, or a shipped config's name
    reference: fume                  # the variant the others are compared with
    seeds: [0, 1, 2]                 # default when neither --seeds nor a preset says otherwise
    variants:
      - name: fume
      - name: fusion_concat
        group: fusion                # ablation group (table sections, Dice bars)
        label: concat                # shown in tables and figures (default: the name)
        overrides: [model.fusion=concat]      # or a mapping {model.fusion: concat}
      - name: leaky
        split: leaky                 # leakage study: other copies of the test recordings added to training

Presets (by name: quick, full; fume/configs/experiments/presets.yaml) add overrides before the
user's and the variant's, and set the seeds and the complexity measurement. Every variant x seed
is validated (load_config, then the model is built) before any training starts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fume.config import FumeConfig, config_file, load_config, read_yaml, shipped_configs
from fume.errors import ConfigError, FumeError

# Files of an experiments folder.
RESULTS_FILE = "results.csv"
ENVIRONMENT_FILE = "environment.json"

# Shipped grids and presets live in fume/configs/experiments/ (package data).
GRIDS_FOLDER = "experiments"
PRESETS_NAME = "presets"
GridKind = Literal["comparison", "ablation", "leakage"]
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_override_list(value: Any) -> list[str]:
    """Overrides as `key=value` strings; a mapping's values are written as JSON (valid YAML)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={json.dumps(v)}" for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("must be a list of 'section.key=value' strings or a mapping {section.key: value}")


class Variant(_Strict):
    name: str = Field(pattern=SLUG)
    group: str = ""
    label: str | None = None
    # leaky (leakage grids): the grouped split's training set plus other augmented copies of the test
    # recordings, tested on the same pairs as the grid's grouped variant.
    split: Literal["grouped", "leaky"] = "grouped"
    overrides: list[str] = Field(default_factory=list)

    @field_validator("overrides", mode="before")
    @classmethod
    def _overrides(cls, value: Any) -> list[str]:
        return _as_override_list(value)

    @property
    def display(self) -> str:
        return self.label or self.name


class ComplexitySettings(_Strict):
    """Where parameters, GMACs and CPU latency are measured (one pair, batch 1)."""

    size: tuple[int, int] = (640, 480)  # (W, H): the deployment size, whatever the training size
    latency_runs: int = Field(default=20, ge=1)
    latency_warmup: int = Field(default=5, ge=0)
    threads: int | None = None  # None = torch's default


class Grid(_Strict):
    name: str = Field(pattern=SLUG)
    kind: GridKind = "comparison"
    description: str = ""
    base: Path
    reference: str | None = None
    seeds: list[int] = Field(default_factory=lambda: [0])
    variants: list[Variant] = Field(min_length=1)
    # Set by load_grid: the grid file, so `base` resolves against its folder.
    source: Path | None = None

    @property
    def reference_variant(self) -> Variant:
        name = self.reference or self.variants[0].name
        return next(v for v in self.variants if v.name == name)

    @property
    def base_path(self) -> Path:
        base = self.base
        if not base.is_absolute() and self.source is not None:
            beside = self.source.parent / base
            if beside.is_file() or base.suffix or len(base.parts) > 1:
                return beside
            # A bare name that is no file beside the grid: a shipped config (fume_fastscnn).
            shipped = shipped_configs()
            if str(base) not in shipped:
                raise ConfigError(f"{base} is neither a file beside the grid nor a shipped config ({', '.join(shipped)})")
            return shipped[str(base)]
        return base


class Preset(_Strict):
    description: str = ""
    seeds: list[int] | None = None
    # torch threads while the grid runs (None = torch's default). On a shared CPU, 1 thread avoids
    # OpenMP oversubscription, which can make every step many times slower.
    threads: int | None = Field(default=None, ge=1)
    overrides: list[str] = Field(default_factory=list)
    complexity: ComplexitySettings = Field(default_factory=ComplexitySettings)

    @field_validator("overrides", mode="before")
    @classmethod
    def _overrides(cls, value: Any) -> list[str]:
        return _as_override_list(value)


def _pydantic_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        parts.append(f"  {key}: {msg}")
    return "\n".join(parts)


def shipped_grids() -> dict[str, Path]:
    """The grids FUME ships, by name (baselines, ablations, leakage)."""
    return {name: path for name, path in shipped_configs(GRIDS_FOLDER).items() if name != PRESETS_NAME}


def presets_file() -> Path:
    return config_file(PRESETS_NAME, shipped_configs(GRIDS_FOLDER), "presets file")


def load_grid(name_or_path: str | Path) -> Grid:
    """Read and check a grid (a file, or a shipped grid's name): known keys only, unique variant
    names, a reference that exists."""
    path = config_file(name_or_path, shipped_grids(), "grid")
    raw = read_yaml(path, "grid file")
    try:
        grid = Grid.model_validate({**raw, "source": path.resolve()})
    except ValidationError as err:
        raise ConfigError(f"invalid grid file {path}:\n{_pydantic_message(err)}") from None
    names = [v.name for v in grid.variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"grid file {path}: variant names must be unique; repeated: {duplicates}")
    if grid.reference is not None and grid.reference not in names:
        raise ConfigError(f"grid file {path}: reference {grid.reference!r} is not a variant; variants: {names}")
    try:
        base = grid.base_path
    except ConfigError as err:
        raise ConfigError(f"grid file {path}: base: {err}") from None
    if not base.is_file():
        raise ConfigError(f"grid file {path}: base config {base} not found (base is relative to the grid file, or a shipped config's name)")
    return grid


def load_presets(path: str | Path | None = None) -> dict[str, Preset]:
    """The presets of a presets file (default: the shipped one)."""
    path = presets_file() if path is None else Path(path)
    raw = read_yaml(path, "presets file")
    presets = {}
    for name, value in raw.items():
        try:
            presets[str(name)] = Preset.model_validate(value or {})
        except ValidationError as err:
            raise ConfigError(f"invalid preset {name!r} in {path}:\n{_pydantic_message(err)}") from None
    return presets


def get_preset(name: str | None, path: str | Path | None = None) -> Preset:
    if name is None:
        return Preset()
    presets = load_presets(path)
    if name not in presets:
        where = f"presets in {path}" if path is not None else "shipped presets"
        raise ConfigError(f"unknown preset {name!r}; {where}: {', '.join(presets)}")
    return presets[name]


# ------------------------------------------------------------------ expansion and validation


@dataclass
class RunSpec:
    """One variant x seed of one grid, with its validated configuration."""

    grid: Grid
    variant: Variant
    seed: int
    config: FumeConfig
    overrides: list[str]
    fold: int | None = None  # with `fume experiments --folds K`: which fold's recordings are held out (0..K-1)
    run_dir: Path | None = None
    # The grouped split's (dataset root, paired tables folder) that leakage and fold splits are made from.
    grouped_data: tuple[Path, Path | None] | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, str, int, int | None]:
        return (self.grid.name, self.variant.name, self.seed, self.fold)

    @property
    def title(self) -> str:
        fold = f" fold {self.fold}" if self.fold is not None else ""
        return f"{self.grid.name}/{self.variant.name} seed {self.seed}{fold}"

    @property
    def is_reference(self) -> bool:
        return self.variant.name == self.grid.reference_variant.name


def config_hash(config: FumeConfig) -> str:
    """Identity of a run: the whole configuration except the experiment's name, tags and notes
    (so FUME in the baselines grid and FUME in the ablations grid is one run)."""
    data = config.to_dict()
    data["experiment"] = {k: v for k, v in data["experiment"].items() if k not in ("name", "tags", "notes", "output_dir")}
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def variant_config(grid: Grid, variant: Variant, seed: int, common: list[str]) -> tuple[FumeConfig, list[str]]:
    """Base config + preset/user overrides (`common`) + the variant's + seed and name. A bad key
    is a ConfigError naming the grid file, the variant and the key."""
    overrides = [*common, *variant.overrides, f"experiment.seed={seed}", f"experiment.name={grid.name}-{variant.name}"]
    try:
        config = load_config(grid.base_path, overrides)
    except ConfigError as err:
        raise ConfigError(f"grid {grid.source or grid.name}, variant {variant.name!r}: {err}") from None
    return config, overrides


def check_model(spec: RunSpec) -> None:
    """Build the model once: options a model does not take fail here, not after hours of other runs."""
    from fume.models.checkpoint import build_model

    try:
        build_model(spec.config.model)
    except FumeError as err:
        raise ConfigError(f"grid {spec.grid.source or spec.grid.name}, variant {spec.variant.name!r}: {err}") from None


def expand_grids(grids: list[Grid], seeds: list[int] | None, common: list[str], folds: int | None = None) -> list[RunSpec]:
    """Every variant x seed (x fold with `folds`; leakage grids keep their one split) of every grid,
    validated. Seeds: `seeds` if given, else each grid's."""
    specs = []
    for grid in grids:
        for variant in grid.variants:
            for seed in seeds if seeds is not None else grid.seeds:
                config, overrides = variant_config(grid, variant, seed, common)
                for fold in range(folds) if folds and grid.kind != "leakage" else [None]:
                    specs.append(RunSpec(grid, variant, seed, config, overrides, fold))
    checked: set[str] = set()
    for spec in specs:
        model_key = spec.config.model.model_dump_json()
        if model_key not in checked:
            check_model(spec)
            checked.add(model_key)
    return specs
