"""The run configuration: one pydantic model in the seed's shape, loaded from YAML plus dotted
overrides (`training.batch_size=4 data.image_size=[320,256]`, values parsed as YAML).

Unknown keys and wrong types are errors that name the key and what is allowed, so a typo
never silently falls back to a default. The configs and experiment grids FUME ships are package
data (`fume/configs/`), found by name as well as by path.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fume.contract import ENCODERS, FUSIONS, GASES, MAX_IMAGE_PIXELS, MODALITIES, TASKS, size_problem
from fume.errors import ConfigError, DataError
from fume.io import write_text

# Metrics a run can monitor for early stopping and best.ckpt (logged as val/<name>).
MonitorMetric = Literal["balanced_accuracy", "miou", "joint_score", "macro_f1", "accuracy", "loss"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LabelConfig(BaseModel):
    """Health classes and how a pH level maps to one (paper, Table 2, by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_names: list[str] = Field(default_factory=lambda: ["Healthy", "Transitional", "Acidotic"])
    ph_to_class: dict[float, int] = Field(
        default_factory=lambda: {6.5: 0, 6.2: 0, 5.9: 1, 5.6: 2, 5.3: 2, 5.0: 2}
    )
    gases: tuple[str, ...] = GASES

    @field_validator("class_names")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"class_names must hold at least two distinct names, got {names}")
        return names

    @model_validator(mode="after")
    def _classes_in_range(self) -> LabelConfig:
        bad = {ph: c for ph, c in self.ph_to_class.items() if not 0 <= c < len(self.class_names)}
        if bad:
            raise ValueError(f"ph_to_class maps to class ids outside 0..{len(self.class_names) - 1}: {bad}")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ph_levels(self) -> list[float]:
        return sorted(self.ph_to_class, reverse=True)

    def class_of_ph(self, ph: float) -> int:
        """Class id of a pH level; pH values are compared to 0.01 so CSV round-off does not matter."""
        for level, class_id in self.ph_to_class.items():
            if math.isclose(float(ph), level, abs_tol=1e-2):
                return class_id
        raise DataError(f"pH {ph} is not one of the configured pH levels {self.ph_levels}")

    def class_id(self, name: str) -> int:
        try:
            return self.class_names.index(name)
        except ValueError:
            raise DataError(f"unknown class name {name!r}; expected one of {self.class_names}") from None

    def phs_of_class(self, class_id: int) -> list[float]:
        return [ph for ph in self.ph_levels if self.ph_to_class[ph] == class_id]


class FrameWindowConfig(BaseModel):
    """How a frame's intensities map to the model's input range [0, 1] (fume.data.window), the same
    in training, evaluation, prediction, export calibration and video. In YAML either the full form
    or a shorthand: `auto`, `minmax`, `percentile`, or `[low, high]` (fixed).

    auto        8-bit frames as stored (value / 255); other bit depths as `percentile`
    minmax      each frame's own minimum and maximum
    percentile  the `percentiles` of the recording's pixels (up to 32 frames spread over it)
    fixed       `range` = [low, high] in the frame's units (counts, or degrees for temperatures)"""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["auto", "minmax", "percentile", "fixed"] = "auto"
    percentiles: tuple[float, float] = (1.0, 99.0)
    range: tuple[float, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"mode": value}
        if isinstance(value, (list, tuple)):
            return {"mode": "fixed", "range": value}
        return value

    @model_validator(mode="after")
    def _check(self) -> FrameWindowConfig:
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must be [low, high] with 0 <= low < high <= 100; got [{low:g}, {high:g}]")
        if self.mode == "fixed" and (self.range is None or not self.range[0] < self.range[1]):
            raise ValueError(f"a fixed window needs range [low, high] with low < high; got {self.range}")
        return self


class AugmentationConfig(BaseModel):
    """Probabilities and ranges; the defaults are the seed's. Set a probability to 0 to disable."""

    model_config = ConfigDict(extra="forbid")

    horizontal_flip_p: float = Field(0.5, ge=0, le=1)
    rotate_limit: float = Field(15.0, ge=0, le=180, description="degrees, +-")
    rotate_p: float = Field(0.5, ge=0, le=1)
    # The seed's ShiftScaleRotate(0.1, 0.15, 15); Affine is its albumentations 2.x replacement.
    shift_limit: float = Field(0.1, ge=0, le=1, description="fraction of the image side, +-")
    scale_limit: float = Field(0.15, ge=0, lt=1, description="relative, +-")
    affine_rotate_limit: float = Field(15.0, ge=0, le=180)
    affine_p: float = Field(0.5, ge=0, le=1)
    brightness_limit: float = Field(0.2, ge=0, le=1)
    contrast_limit: float = Field(0.2, ge=0, le=1)
    brightness_contrast_p: float = Field(0.5, ge=0, le=1)
    # The seed gives the noise as a variance in 8-bit units (10..50); albumentations 2.x takes the
    # standard deviation as a fraction of 255, so it is converted in build_augmentation.
    noise_var_limit: tuple[float, float] = (10.0, 50.0)
    noise_p: float = Field(0.3, ge=0, le=1)
    blur_limit: tuple[int, int] = (3, 7)
    blur_p: float = Field(0.3, ge=0, le=1)
    gamma_limit: tuple[float, float] = (80.0, 120.0)
    gamma_p: float = Field(0.3, ge=0, le=1)
    border_mode: Literal["reflect", "replicate", "constant"] = "reflect"


class ExperimentConfig(Section):
    name: str = "fume"
    seed: int = 42
    # A run writes to output_dir/name unless `fume train --out` says otherwise.
    output_dir: Path = Path("runs")
    tags: list[str] = Field(default_factory=list)
    notes: str = ""


class ModelConfig(Section):
    """`name` picks a registry model (fume.models.list_models()); the other keys are passed to
    fume.models.create_model only when set, so baselines without a switch don't receive it."""

    name: str = "fume"
    # Literal of a tuple = Literal of its members: the option names come from fume.contract.
    encoder: Literal[ENCODERS] | None = None
    fusion: Literal[FUSIONS] | None = None
    tasks: Literal[TASKS] | None = None
    modalities: Literal[MODALITIES] | None = None
    num_classes: int | None = Field(default=None, ge=2)
    num_seg_classes: int | None = Field(default=None, ge=2)
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)

    def model_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "name" and v is not None}


class SyntheticDataConfig(Section):
    """How `fume quickstart` generates the embedded synthetic dataset when it is absent."""

    n_originals: int = Field(default=120, ge=6)
    augmentations: int = Field(default=2, ge=0)
    size: tuple[int, int] = (640, 480)
    seed: int = 0
    class_mix: tuple[float, ...] | None = None  # share of recordings per class; None = the generator's (seed statistics)
    co2_fraction: float | None = Field(default=None, ge=0, le=1)
    # The shipped physics (fume/configs/synthetic/<difficulty>.yaml), or a physics file of one's own.
    difficulty: Literal["realistic", "easy"] = "realistic"
    physics: Path | None = None

    def generator_kwargs(self) -> dict[str, Any]:
        kwargs = {"n_originals": self.n_originals, "augmentations": self.augmentations, "size": tuple(self.size), "seed": self.seed,
                  "difficulty": self.difficulty}
        kwargs.update({k: v for k, v in (("class_mix", self.class_mix), ("co2_fraction", self.co2_fraction), ("physics", self.physics)) if v is not None})
        return kwargs


class DataConfig(Section):
    dataset_root: Path = Path("data/synthetic")
    # Where paired_{train,val,test}_annotations.csv live; None = dataset_root.
    paired_dir: Path | None = None
    image_size: tuple[int, int] = (640, 480)  # (W, H)
    num_workers: int = Field(default=2, ge=0)
    pin_memory: bool = True
    modality_dropout: float = Field(default=0.2, ge=0.0, le=1.0)
    augment: bool = True
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    # Check every file the tables name before the first step (fume.data.validate).
    validate_before_training: bool = True
    # Largest frame or mask read (W x H pixels); bigger files are refused from their header, before
    # decoding (a decompression bomb). Default fume.data.frames.MAX_IMAGE_PIXELS, 50 megapixels.
    max_image_pixels: int = Field(default=MAX_IMAGE_PIXELS, ge=1)
    # Accept absolute paths and paths leaving the dataset root ('..') in the tables
    # (fume.data.layout.resolve_table_path); off, such a row stops with an error naming it.
    allow_outside_root: bool = False
    # Intensity window of the frames (FrameWindowConfig): `auto` keeps 8-bit frames as they were.
    frame_window: FrameWindowConfig = Field(default_factory=FrameWindowConfig)
    synthetic: SyntheticDataConfig | None = None

    @field_validator("image_size")
    @classmethod
    def _model_input_size(cls, size: tuple[int, int]) -> tuple[int, int]:
        problem = size_problem(*size)
        if problem:
            raise ValueError(f"must be [W, H]; got [{size[0]}, {size[1]}]: {problem}")
        return size

    @property
    def paired_tables_dir(self) -> Path:
        return self.paired_dir if self.paired_dir is not None else self.dataset_root

    def paired_table(self, split: str) -> Path:
        return self.paired_tables_dir / f"paired_{split}_annotations.csv"


class OptimizerConfig(Section):
    name: Literal["adamw"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)


class SchedulerConfig(Section):
    # Cosine annealing from optimizer.lr to eta_min over the whole run (stepped every batch).
    name: Literal["cosine", "none"] = "cosine"
    eta_min: float = Field(default=1e-5, ge=0)
    warmup_epochs: float = Field(default=0.0, ge=0)


class LossConfig(Section):
    seg_loss: Literal["focal", "focal_dice", "dice", "ce", "weighted_ce"] = "focal_dice"
    cls_loss: Literal["focal", "focal_dice", "dice", "ce", "weighted_ce"] = "focal"
    gamma: float = Field(default=2.0, ge=0)
    # Per-class weights of the classification loss (focal alpha / CE weights), one per class.
    cls_alpha: list[float] | None = Field(default_factory=lambda: [1.0, 8.0, 1.2])
    seg_class_weights: list[float] | None = None
    lambda_seg: float = Field(default=1.0, ge=0)
    lambda_cls: float = Field(default=1.0, ge=0)


class EarlyStoppingConfig(Section):
    enabled: bool = True
    monitor: MonitorMetric = "balanced_accuracy"
    patience: int = Field(default=15, ge=1)
    min_delta: float = Field(default=0.0, ge=0)


class CheckpointConfig(Section):
    monitor: MonitorMetric = "balanced_accuracy"  # decides best.ckpt
    save_last: bool = True
    every_n_epochs: int = Field(default=5, ge=0)  # 0 = no periodic checkpoints


class TrainingConfig(Section):
    num_epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=8, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    grad_clip: float | None = Field(default=1.0, gt=0)
    use_amp: bool = True  # bf16-mixed where the GPU supports it, else 16-mixed; fp32 on CPU
    accumulate_grad_batches: int = Field(default=1, ge=1)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)


class ValidationConfig(Section):
    batch_size: int = Field(default=8, ge=1)
    every_n_epochs: int = Field(default=1, ge=1)
    sanity_steps: int = Field(default=0, ge=0)


class TestingConfig(Section):
    batch_size: int = Field(default=8, ge=1)
    split: str = "test"
    save_masks: bool = False
    # Class logits are divided by it before softmax wherever the model predicts (checkpoint, ONNX);
    # `fume evaluate --calibrate` fits it on the validation split and stores it in the checkpoint.
    temperature: float = Field(default=1.0, gt=0)
    qualitative_per_class: int = Field(default=2, ge=0)


class WandbConfig(Section):
    enabled: bool = False
    project: str = "fume"
    entity: str | None = None
    offline: bool = True


class MlflowConfig(Section):
    enabled: bool = False
    tracking_uri: str | None = None  # None = a file store under RUN_DIR/mlruns
    experiment_name: str = "fume"


class LoggingConfig(Section):
    tensorboard: bool = True
    csv: bool = True
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    log_every_n_steps: int = Field(default=10, ge=1)
    progress_bar: bool = True
    metrics_table: bool = True


class ResumeConfig(Section):
    enabled: bool = False
    checkpoint: Path | None = None  # None = RUN_DIR/checkpoints/last.ckpt


class TrainerConfig(Section):
    """Passed to lightning.Trainer: several GPUs or nodes run DDP with the same command."""

    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(default=1, ge=1)
    strategy: str = "auto"
    deterministic: bool = False
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0


class FumeConfig(Section):
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    testing: TestingConfig = Field(default_factory=TestingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    weighted_sampling: bool = True
    resume: ResumeConfig = Field(default_factory=ResumeConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @model_validator(mode="after")
    def _class_counts_agree(self) -> FumeConfig:
        n = len(self.data.labels.class_names)
        for key, weights in (("training.loss.cls_alpha", self.training.loss.cls_alpha),):
            if weights is not None and len(weights) != n:
                raise ValueError(f"{key} has {len(weights)} values but data.labels.class_names has {n} classes")
        seg = self.training.loss.seg_class_weights
        if seg is not None and len(seg) != 3:
            raise ValueError(f"training.loss.seg_class_weights needs 3 values (background, tube, gas), got {len(seg)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-like values (paths as strings): safe for YAML files and checkpoints."""
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- loading, overrides, saving


def _describe_allowed(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The keys allowed at `loc` (the parent of an unknown key), for the error message."""
    cls: Any = model_cls
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) and hasattr(cls, "model_fields") else None
        if field is None:
            return ""
        cls = field.annotation
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            # Optional[Section]: look inside the union for the pydantic model.
            cls = next((a for a in getattr(cls, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if cls is None:
                return ""
    return ", ".join(cls.model_fields)


def format_validation_error(err: ValidationError, source: str, model_cls: type[BaseModel] | None = None) -> str:
    """One line per problem, naming the dotted key; `model_cls` (default FumeConfig) lists allowed keys."""
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _describe_allowed(model_cls or FumeConfig, loc[:-1])
            lines.append(f"  {key}: unknown key; allowed keys here: {allowed}")
        elif e["type"] == "value_error":  # our own validators already name the value
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {msg}" if not loc else f"  {key}: {msg}")
        else:
            got = e.get("input")
            shown = f"a section with keys {sorted(got)}" if isinstance(got, dict) else repr(got)
            lines.append(f"  {key}: {e['msg']} (got {shown})")
    return "\n".join(lines)


def yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where it is."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a","b","c"], yaml-parsed value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. training.batch_size=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({yaml_problem(err)})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); unknown keys are left for validation to reject."""
    import copy

    result = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"override {text!r}: {where} is a value ({child!r}), not a section")
            node = child
        node[path[-1]] = value
    return result


def validate_config(raw: dict[str, Any], source: str = "configuration") -> FumeConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (experiment, model, data, training, ...), got {type(raw).__name__}")
    try:
        return FumeConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (empty file -> {}); `what` names it in errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {yaml_problem(err)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


# ---------------------------------------------------------------- configs shipped with FUME


def shipped_configs(folder: str = "") -> dict[str, Path]:
    """The YAML files FUME ships in `fume/configs/<folder>` (package data), by name (file stem)."""
    root = resources.files("fume") / "configs"
    if folder:
        root = root / folder
    # Grids name their base config by a path relative to themselves, so these must be real files.
    if not isinstance(root, Path) or not root.is_dir():
        raise ConfigError(f"FUME's shipped configs are missing ({root} is not a folder); reinstall fume")
    return {path.stem: path for path in sorted(root.glob("*.yaml"))}


def config_file(name_or_path: str | Path, shipped: dict[str, Path] | None = None, what: str = "config") -> Path:
    """A user's YAML file, or the shipped one of that name (`fume_fastscnn`, `quickstart`, or the
    names in `shipped`). Anything with a folder or a .yaml/.yml suffix is a path; an unknown
    name is a ConfigError listing the shipped names."""
    path = Path(name_or_path)
    text = str(name_or_path)
    if path.is_file() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path  # read_yaml names a missing file
    shipped = shipped_configs() if shipped is None else shipped
    if text not in shipped:
        raise ConfigError(f"unknown {what} {text!r}: no such file, and FUME ships none of that name (shipped: {', '.join(shipped)})")
    return shipped[text]


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> FumeConfig:
    """Read a YAML config (a path, or the name of a shipped one such as "fume_fastscnn"; the
    defaults when None), apply dotted overrides, validate. Raises ConfigError naming the file, the
    key and what is allowed."""
    raw = read_yaml(config_file(path)) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    if overrides:
        source += " + overrides"
    return validate_config(apply_overrides(raw, overrides), source)


def override_config(config: FumeConfig, overrides: list[str] | tuple[str, ...], source: str = "configuration") -> FumeConfig:
    """A copy of `config` with dotted overrides applied and validated."""
    if not overrides:
        return config
    return validate_config(apply_overrides(config.to_dict(), overrides), f"{source} + overrides")


def resolve_paths(config: FumeConfig, base: str | Path | None = None) -> FumeConfig:
    """Relative data and output paths made absolute (against the working directory), so a saved
    config and a checkpoint still find the data when used from another directory."""
    base = Path(base) if base is not None else Path.cwd()

    def absolute(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p)).resolve()

    data = config.data.model_copy(update={"dataset_root": absolute(config.data.dataset_root), "paired_dir": absolute(config.data.paired_dir)})
    experiment = config.experiment.model_copy(update={"output_dir": absolute(config.experiment.output_dir)})
    return config.model_copy(update={"data": data, "experiment": experiment})


def dump_config(config: FumeConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


def save_config(config: FumeConfig, path: str | Path) -> Path:
    """Write the resolved configuration as YAML (atomically)."""
    write_text(path, dump_config(config))
    return Path(path)
