"""Reading frames and masks. A file that cannot be read raises DataError naming it; nothing is
silently replaced by a blank image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fume.errors import DataError

# PIL modes that hold 8-bit values, and what they become as gray.
_GRAY_MODES = {"L", "P", "1"}
_COLOUR_MODES = {"RGB", "RGBA", "LA", "CMYK", "YCbCr"}


def _open(path: str | os.PathLike, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}")
    try:
        image = Image.open(path)
        image.load()  # decode now, so a truncated file fails here and not later
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read {what} {path}: {err}") from None
    return image


def load_frame(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit gray frame, (H, W) uint8. RGB(A) files are converted to gray (ITU-R 601 luma)."""
    image = _open(path, "frame")
    if image.mode == "P":
        image = image.convert("RGB")  # a palette frame: the palette holds the intensities
    if image.mode in _COLOUR_MODES:
        image = image.convert("L")
    if image.mode not in _GRAY_MODES:
        raise DataError(f"frame {path} has pixel mode {image.mode!r}; expected an 8-bit gray or RGB PNG")
    return np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A label mask, (H, W) uint8 of class values. Palette masks keep their indices; an RGB mask is
    accepted only when its three channels are equal."""
    image = _open(path, "mask")
    if image.mode in {"L", "P"}:
        return np.asarray(image, dtype=np.uint8)
    if image.mode in {"RGB", "RGBA"}:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DataError(f"mask {path} is a colour image; expected one channel of class values 0/1/2")
        return np.ascontiguousarray(rgb[..., 0])
    raise DataError(f"mask {path} has pixel mode {image.mode!r}; expected an 8-bit single-channel PNG")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(W, H) of an image file, read from its header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None
