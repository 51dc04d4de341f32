"""Boundary distances between two binary masks: HD95 and ASD in pixels.

Convention (the one MedPy uses for ``hd95``, and MONAI's symmetric average surface distance):

- The boundary of a mask is its inner contour: the mask pixels that have at least one
  4-neighbour outside the mask; pixels on the image edge count as boundary (outside the image is
  background). This is ``mask & ~binary_erosion(mask, cross, border_value=0)``.
- For every boundary pixel of the prediction, the Euclidean distance to the nearest boundary
  pixel of the ground truth, and vice versa. The two sets are pooled (symmetric).
- HD95 = 95th percentile of the pooled distances (numpy's linear interpolation); ASD = their mean.
- When exactly one mask is empty (a missed plume, or gas predicted where there is none) the
  distances are undefined; `boundary_scores` then gives the worst case, the image diagonal in
  pixels, for both HD95 and ASD, so that missing a plume never improves the mean. When both are
  empty there is nothing to measure: the image is excluded (and counted).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_CROSS = ndimage.generate_binary_structure(2, 1)


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Inner contour of a 2-D boolean mask (see the module docstring)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask (H, W), got shape {mask.shape}")
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def surface_distances(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Distances pred-boundary -> target-boundary and target-boundary -> pred-boundary, in pixels.

    Returns None when either mask is empty.
    """
    pred = np.asarray(pred, dtype=bool)
    target = np.asarray(target, dtype=bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {target.shape}")
    if not pred.any() or not target.any():
        return None
    pred_edge, target_edge = mask_boundary(pred), mask_boundary(target)
    # Every boundary pixel lies inside the bounding box of both masks, so the distance transforms
    # only need that crop: same distances, much less work for small plumes.
    rows = np.flatnonzero((pred | target).any(1))
    cols = np.flatnonzero((pred | target).any(0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pred_edge, target_edge = pred_edge[crop], target_edge[crop]
    to_target = ndimage.distance_transform_edt(~target_edge)
    to_pred = ndimage.distance_transform_edt(~pred_edge)
    return to_target[pred_edge], to_pred[target_edge]


def hd95_asd(pred: np.ndarray, target: np.ndarray) -> tuple[float, float] | None:
    """(HD95, ASD) in pixels of two binary masks, symmetric; None when either mask is empty."""
    distances = surface_distances(pred, target)
    if distances is None:
        return None
    pooled = np.concatenate(distances)
    return float(np.percentile(pooled, 95)), float(pooled.mean())


# What boundary_scores did with an image.
MEASURED, PENALISED, EXCLUDED = "measured", "penalised", "excluded"


def boundary_scores(pred: np.ndarray, target: np.ndarray) -> tuple[tuple[float, float] | None, str]:
    """((HD95, ASD) or None, outcome): measured, penalised with the image diagonal when exactly one
    mask is empty, or excluded (None) when both are."""
    pred = np.asarray(pred, dtype=bool)
    target = np.asarray(target, dtype=bool)
    measured = hd95_asd(pred, target)
    if measured is not None:
        return measured, MEASURED
    if not pred.any() and not target.any():
        return None, EXCLUDED
    diagonal = float(np.hypot(*pred.shape))
    return (diagonal, diagonal), PENALISED
