"""What every part of FUME agrees on: the gases, the mask values, the model's input and output
names, and the rules for frame sizes. Plain Python, so the runtime and the tests can import it
without torch."""

from __future__ import annotations

import re

from fume.errors import ConfigError

GASES: tuple[str, ...] = ("co2", "ch4")

# Mask pixel values: 0 background, 1 tube (the gas outlet), 2 gas plume.
BACKGROUND, TUBE, GAS = 0, 1, 2
MASK_CLASS_NAMES: tuple[str, ...] = ("background", "tube", "gas")
MASK_VALUES = frozenset({BACKGROUND, TUBE, GAS})
NUM_SEG_CLASSES = len(MASK_CLASS_NAMES)

# forward(co2, ch4, modality_mask): frames (B, 1, H, W) float32 in [0, 1], modality_mask (B, 2).
INPUT_NAMES: tuple[str, ...] = ("co2", "ch4", "modality_mask")
CLS_OUTPUT = "cls_logits"
SEG_OUTPUTS: dict[str, str] = {gas: f"{gas}_seg_logits" for gas in GASES}
OUTPUT_NAMES: tuple[str, ...] = (CLS_OUTPUT, *SEG_OUTPUTS.values())

# Largest image (W x H) FUME decodes: 50 megapixels, ~160x a 640x480 OGI frame and above any thermal
# camera's sensor; larger files are refused from their header (decompression bombs).
MAX_IMAGE_PIXELS = 50_000_000

# The models downsample by 32, so both sides of the model's input must be multiples of it.
SIZE_MULTIPLE = 32

# The FUME model's switches (fume.models.create_model("fume", ...)), written once here so the
# torch-free configuration validates against the same names the model accepts.
ENCODERS: tuple[str, ...] = ("shared", "separate")
FUSIONS: tuple[str, ...] = ("concat", "add", "self_attention", "cross_attention", "self_channel", "full_cross")
TASKS: tuple[str, ...] = ("seg_cls", "seg", "cls")
MODALITIES: tuple[str, ...] = ("dual", *GASES)  # both gases, or one gas alone


def key_name(name: str) -> str:
    """A class name as a metrics key or column part: 'Healthy' -> 'healthy', 'Gas plume' -> 'gas_plume'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def probability_columns(class_names: list[str] | tuple[str, ...], prefix: str = "prob_") -> list[str]:
    """The per-class probability columns of predictions.csv, e.g. prob_healthy."""
    return [f"{prefix}{key_name(name)}" for name in class_names]


def nearest_valid_sizes(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> list[tuple[int, int]]:
    """Valid (H, W) sizes around (height, width): each side rounded down and up to the multiple."""

    def around(n: int) -> list[int]:
        down = max(multiple, n // multiple * multiple)
        up = max(multiple, -(-n // multiple) * multiple)
        return sorted({down, up})

    return [(h, w) for h in around(height) for w in around(width)]


def size_problem(width: int, height: int, multiple: int = SIZE_MULTIPLE) -> str | None:
    """Why (width, height) is not a valid model input size, naming the nearest valid ones; None if it is."""
    if width > 0 and height > 0 and not width % multiple and not height % multiple:
        return None
    options = ", ".join(f"{w}x{h}" for h, w in nearest_valid_sizes(height, width, multiple))
    return f"width and height must be positive multiples of {multiple} (the models downsample by {multiple}); nearest valid sizes (WxH): {options}"


def check_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> None:
    """ValueError unless both sides are positive multiples of `multiple`, naming the nearest valid sizes."""
    problem = size_problem(width, height, multiple)
    if problem:
        raise ValueError(f"input is {width}x{height} (WxH): {problem}. Resize or pad the frames.")


def parse_size(text: str, model_input: bool = True, minimum: int = 32) -> tuple[int, int]:
    """'640x480' -> (640, 480) = (W, H). A model input size (`model_input`) must be a multiple of
    32 on both sides; a frame size (synthetic data) only at least `minimum` pixels. ConfigError otherwise."""
    try:
        width, height = (int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"size must be WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if model_input:
        problem = size_problem(width, height)
        if problem:
            raise ConfigError(f"size {text!r}: {problem}")
    elif width < minimum or height < minimum:
        raise ConfigError(f"size {text!r} is too small; both sides must be at least {minimum} pixels")
    return width, height
