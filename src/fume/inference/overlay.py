"""Overlay images: the frame in gray with the gas plume and the tube coloured and the predicted
class written in the top-left corner. Images are BGR uint8 (OpenCV's order)."""

from __future__ import annotations

import cv2
import numpy as np

from fume.contract import GAS, TUBE

GAS_BGR = (0, 140, 255)  # orange
TUBE_BGR = (255, 200, 0)  # cyan-blue
GAS_ALPHA = 0.45
TUBE_ALPHA = 0.6


def _tint_table() -> np.ndarray:
    """(3 labels x 256 gray levels, 3) BGR: gray kept for background, blended with the gas or tube
    colour, rounded as a float32 blend would be."""
    gray = np.arange(256, dtype=np.float32)[:, None].repeat(3, axis=1)
    table = np.stack([gray, gray.copy(), gray.copy()])
    for label, colour, alpha in ((GAS, GAS_BGR, GAS_ALPHA), (TUBE, TUBE_BGR, TUBE_ALPHA)):
        table[label] = (1 - alpha) * gray + alpha * np.asarray(colour, np.float32)
    return np.clip(table + 0.5, 0, 255).astype(np.uint8).reshape(-1, 3)


# One lookup per pixel (label * 256 + gray) instead of float blends of the whole image: drawing the
# overlays was the slowest stage of the video path (profiled at 640x480).
_TINT = _tint_table()


def overlay(frame: np.ndarray, mask: np.ndarray | None, lines: list[str]) -> np.ndarray:
    """(H, W) uint8 frame + (H, W) labels -> (H, W, 3) BGR with gas/tube tinted, the plume outlined
    and `lines` of text in the top-left corner."""
    if mask is None:
        image = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    else:
        index = mask.astype(np.intp) * 256 + frame
        image = np.take(_TINT, index, axis=0)  # the same rows as _TINT[index], in a fifth of its time
    if mask is not None:
        contours, _ = cv2.findContours((mask == GAS).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(image, contours, -1, GAS_BGR, 1, cv2.LINE_AA)
    return draw_text(image, lines)


def _layout(lines: list[str], ref_height: int) -> tuple[float, int, int, int, int]:
    """Font scale, thickness, padding, line height and box width for text on an image `ref_height` tall."""
    scale = max(0.3, ref_height / 900)
    thickness = 1 if ref_height < 700 else 2
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0] for line in lines]
    pad = max(2, int(4 * scale))
    return scale, thickness, pad, max(s[1] for s in sizes) + 2 * pad, max(s[0] for s in sizes) + 2 * pad


def draw_text(image: np.ndarray, lines: list[str], ref_height: int | None = None) -> np.ndarray:
    """White text on a dark box in the top-left corner, sized to the image (or to `ref_height`)."""
    if not lines:
        return image
    h = image.shape[0]
    scale, thickness, pad, line_h, box_w = _layout(lines, ref_height or h)
    cv2.rectangle(image, (0, 0), (min(box_w, image.shape[1] - 1), min(line_h * len(lines), h - 1)), (0, 0, 0), -1)
    for i, line in enumerate(lines):
        cv2.putText(image, line, (pad, (i + 1) * line_h - pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image


def text_panel(lines: list[str], width: int, ref_height: int) -> np.ndarray:
    """A black strip `width` wide holding `lines`, lettered as on an image `ref_height` tall."""
    line_h = _layout(lines, ref_height)[3]
    return draw_text(np.zeros((line_h * len(lines), width, 3), np.uint8), lines, ref_height)


def side_by_side(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images of one height next to each other with a black gap."""
    if len(images) == 1:
        return images[0]
    h = images[0].shape[0]
    spacer = np.zeros((h, gap, 3), np.uint8)
    parts: list[np.ndarray] = []
    for image in images:
        parts += [image, spacer]
    return np.ascontiguousarray(np.concatenate(parts[:-1], axis=1))
