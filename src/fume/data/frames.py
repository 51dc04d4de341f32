"""Frames and masks: reading them (a file that cannot be read raises DataError naming it; nothing
is silently replaced by a blank image) and turning a frame into the model's input. An image of
more than MAX_IMAGE_PIXELS pixels (a decompression bomb: a few KB on disk, gigabytes decoded) is
refused from its header, before any pixel is decoded. Frames keep their bit depth (8-bit, 16-bit,
float); training, evaluation, prediction, export calibration and video window them
(fume.data.window) and resize them here, so they cannot drift apart."""

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
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})

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
    """A gray frame (H, W) as stored: uint8 (8-bit files; RGB(A) converted to gray by ITU-R 601
    luma), uint16 (16-bit PNG or TIFF: raw counts) or float32 (32-bit float TIFF: temperatures).
    fume.data.window maps any of them to the model's input. Images over `max_pixels` (default
    MAX_IMAGE_PIXELS) raise DataError before decoding."""
    if Path(path).suffix.lower() in TIFF_SUFFIXES:
        return _load_tiff(Path(path), max_pixels)
    image = open_image(path, "frame", max_pixels)
    if image.mode == "P":
        image = image.convert("RGB")  # a palette frame: the palette holds the intensities
    if image.mode in _COLOUR_MODES:
        image = image.convert("L")
    if image.mode in _GRAY_MODES:
        return np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)  # native byte order whatever the file's
    if image.mode == "I":  # Pillow opens some 16-bit PNGs as 32-bit integers
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"frame {path} holds 32-bit integers outside 0..65535; expected an 8- or 16-bit gray image")
        return values.astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    raise DataError(f"frame {path} has pixel mode {image.mode!r}; expected a gray (8/16-bit, float) or RGB image")


def _load_tiff(path: Path, max_pixels: int | None) -> np.ndarray:
    """A TIFF frame through tifffile (Pillow reads few of the compressions and sample formats
    that thermal cameras write): one page, one channel (or 8-bit RGB, made gray)."""
    import tifffile

    if not path.is_file():
        raise DataError(f"frame file not found: {path}")
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise DataError(f"cannot read frame {path}: a TIFF without an image")
            if len(tif.pages) != 1:
                raise DataError(f"frame {path} is a TIFF of {len(tif.pages)} pages; expected one frame per file")
            page = tif.pages[0]
            check_image_pixels(path, (page.imagewidth, page.imagelength), max_pixels, "frame")
            values = page.asarray()
    except DataError:
        raise
    except Exception as err:  # tifffile raises TiffFileError, ValueError, OSError, codec errors
        raise DataError(f"cannot read frame {path}: {err}") from None
    if values.ndim == 3 and values.shape[-1] in (3, 4) and values.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(values[..., :3])).convert("L"))
    if values.ndim != 2:
        raise DataError(f"frame {path} has shape {values.shape}; expected one channel (H, W)")
    if values.dtype in (np.uint8, np.uint16):
        return values
    if values.dtype.kind == "f":
        return values.astype(np.float32)
    if values.dtype.kind in "iu" and values.size and 0 <= values.min() and values.max() <= 65535:
        return values.astype(np.uint16)
    raise DataError(f"frame {path} holds {values.dtype} values; expected 8- or 16-bit integers or floats")


def frame_bit_depth(frame: np.ndarray) -> str:
    """'8-bit', '16-bit' or 'float' (as validate-data reports it)."""
    return {np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit"}.get(frame.dtype, "float")


def frame_suffix(frame: np.ndarray) -> str:
    """The file type a frame is stored in without losing bits: PNG for 8/16-bit, TIFF for float."""
    return ".tiff" if frame.dtype.kind == "f" else ".png"


def write_frame(path: str | os.PathLike, frame: np.ndarray) -> Path:
    """A gray frame (uint8, uint16 or float32) written atomically to `path` with frame_suffix(frame)
    in place of its suffix; returns the path written."""
    import io

    import tifffile

    from fume.io import write_bytes, write_png

    path = Path(path).with_suffix(frame_suffix(frame))
    if path.suffix == ".png":
        return write_png(path, np.ascontiguousarray(frame))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(frame, dtype=np.float32), compression="zlib")
    return write_bytes(path, buffer.getvalue(), durable=False)


def stored_bit_depth(path: str | os.PathLike) -> str:
    """A frame file's bit depth as load_frame will return it ('8-bit', '16-bit', 'float'), from its
    header only."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                dtype = np.dtype(tif.pages[0].dtype)
        except Exception as err:
            raise DataError(f"cannot read frame {path}: {err}") from None
        return "8-bit" if dtype == np.uint8 else "float" if dtype.kind == "f" else "16-bit"
    with _header(path, "frame") as image:
        return "float" if image.mode == "F" else "16-bit" if image.mode.startswith("I") else "8-bit"


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
    """A (H, W) frame (any dtype) at the model's size (W, H), by area interpolation (no aliasing when shrinking)."""
    size = (int(size[0]), int(size[1]))
    return frame if frame.shape[::-1] == size else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Labels at size (W, H) by nearest neighbour (no invented classes at boundaries)."""
    size = (int(size[0]), int(size[1]))
    return mask if mask.shape[::-1] == size else cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def frame_to_input(frame: np.ndarray) -> np.ndarray:
    """A windowed frame (fume.data.window.window_frame) -> float32 (H, W) in [0, 1], the models'
    input range: uint8 / 255, float32 as it is."""
    return frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32, copy=False)


def windowed_to_input(windowed: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A windowed frame (fume.data.window.window_frame) at its native size -> the model's input at size (W, H)."""
    return frame_to_input(resize_frame(windowed, size))

