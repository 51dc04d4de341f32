"""Frames and masks: reading them (a file that cannot be read raises DataError naming it; nothing
is silently replaced by a blank image) and turning a frame into the model's input. An image of
more than MAX_IMAGE_PIXELS pixels (a decompression bomb: a few KB on disk, gigabytes decoded) is
refused from its header, before any pixel is decoded. Training,
evaluation, prediction and export calibration all prepare frames here, so they cannot drift apart."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from fume.contract import MASK_VALUES, MAX_IMAGE_PIXELS
from fume.errors import DataError

# PIL modes that hold 8-bit values, and what they become as gray.
_GRAY_MODES = {"L", "P", "1"}
_COLOUR_MODES = {"RGB", "RGBA", "LA", "CMYK", "YCbCr"}

# The image files FUME reads (frames of a folder, a recording, an imported layout).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

# MAX_IMAGE_PIXELS (fume.contract) is overridden per call (`max_pixels`) or by data.max_image_pixels.


class ImageTooLargeError(DataError):
    """An image over the pixel limit, refused before decoding."""


def check_image_pixels(path: str | os.PathLike, size: tuple[int, int], max_pixels: int | None = None, what: str = "image") -> None:
    """DataError naming the file, its size and the limit when W x H exceeds `max_pixels`."""
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    w, h = size
    if w * h > limit:
        raise ImageTooLargeError(
            f"{what} {path} is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the limit of {limit / 1e6:g} megapixels "
            "(data.max_image_pixels); refusing to decode it (a possible decompression bomb)"
        )


def _header(path: Path, what: str, max_pixels: int | None = None) -> Image.Image:
    """The image opened lazily (header only). PIL itself refuses to open an image of over twice its
    Image.MAX_IMAGE_PIXELS (~179 megapixels): that is an ImageTooLargeError too, whatever the limit."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit is checked next
            return Image.open(path)
    except Image.DecompressionBombError as err:
        limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
        raise ImageTooLargeError(
            f"{what} {path} is too large to decode safely ({err}); the limit is {limit / 1e6:g} megapixels "
            "(data.max_image_pixels)"
        ) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read {what} {path}: {err}") from None


def open_image(path: str | os.PathLike, what: str, max_pixels: int | None = None) -> Image.Image:
    """The decoded PIL image; DataError naming the file when it is missing, unreadable or over the pixel limit."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}")
    image = _header(path, what, max_pixels)
    try:
        check_image_pixels(path, image.size, max_pixels, what)
        image.load()  # decode now, so a truncated file fails here and not later
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        image.close()
        raise DataError(f"cannot read {what} {path}: {err}") from None
    except DataError:
        image.close()
        raise
    return image


def load_frame(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """An 8-bit gray frame, (H, W) uint8. RGB(A) files are converted to gray (ITU-R 601 luma).
    Images over `max_pixels` (default MAX_IMAGE_PIXELS) raise DataError before decoding."""
    image = open_image(path, "frame", max_pixels)
    if image.mode == "P":
        image = image.convert("RGB")  # a palette frame: the palette holds the intensities
    if image.mode in _COLOUR_MODES:
        image = image.convert("L")
    if image.mode not in _GRAY_MODES:
        raise DataError(f"frame {path} has pixel mode {image.mode!r}; expected an 8-bit gray or RGB PNG")
    return np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)


def load_mask(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """A label mask, (H, W) uint8 of class values. Palette masks keep their indices; an RGB mask is
    accepted only when its three channels are equal. Over `max_pixels`: DataError, as load_frame."""
    image = open_image(path, "mask", max_pixels)
    if image.mode in {"L", "P"}:
        return np.asarray(image, dtype=np.uint8)
    if image.mode in {"RGB", "RGBA"}:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DataError(f"mask {path} is a colour image; expected one channel of class values 0/1/2")
        return np.ascontiguousarray(rgb[..., 0])
    raise DataError(f"mask {path} has pixel mode {image.mode!r}; expected an 8-bit single-channel PNG")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(W, H) of an image file, read from its header only (ImageTooLargeError beyond PIL's own limit)."""
    with _header(Path(path), "image") as image:
        return image.size


def load_labelled_frame(
    frame_path: str | os.PathLike, mask_path: str | os.PathLike, max_pixels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A frame and its mask, checked to have the same size and only the values 0, 1, 2."""
    frame, mask = load_frame(frame_path, max_pixels), load_mask(mask_path, max_pixels)
    if frame.shape != mask.shape:
        raise DataError(f"frame {frame_path} is {frame.shape[::-1]} (W, H) but its mask {mask_path} is {mask.shape[::-1]}")
    values = np.unique(mask)
    if not set(values.tolist()) <= MASK_VALUES:
        raise DataError(f"mask {mask_path} holds values {values.tolist()}; expected only 0 (background), 1 (tube), 2 (gas)")
    return frame, mask


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 (H, W) frame at the model's size (W, H), by area interpolation (no aliasing when shrinking)."""
    size = (int(size[0]), int(size[1]))
    return frame if frame.shape[::-1] == size else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Labels at size (W, H) by nearest neighbour (no invented classes at boundaries)."""
    size = (int(size[0]), int(size[1]))
    return mask if mask.shape[::-1] == size else cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def frame_to_input(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> float32 (H, W) in [0, 1], the models' input range."""
    return frame.astype(np.float32) / 255.0


def prepare_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) frame -> the model's float32 input at size (W, H)."""
    return frame_to_input(resize_frame(frame, size))
