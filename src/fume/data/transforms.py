"""Training-time augmentation: the seed's list (settings and defaults in
fume.config.AugmentationConfig, a config's data.augmentation section) as an albumentations
pipeline. Geometric transforms move a frame and its own mask together (masks by nearest
neighbour); the photometric ones touch the frame only."""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np

from fume.config import AugmentationConfig

_BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


def noise_std_range(var_limit: tuple[float, float]) -> tuple[float, float]:
    """Variance in 8-bit units -> standard deviation as a fraction of 255 (GaussNoise std_range)."""
    return (math.sqrt(var_limit[0]) / 255.0, math.sqrt(var_limit[1]) / 255.0)


def build_augmentation(cfg: AugmentationConfig | None = None) -> A.Compose:
    """The augmentation pipeline; call it as pipeline(image=frame_uint8, mask=mask_uint8)."""
    cfg = cfg or AugmentationConfig()
    border = _BORDERS[cfg.border_mode]
    nearest = cv2.INTER_NEAREST
    return A.Compose(
        [
            A.HorizontalFlip(p=cfg.horizontal_flip_p),
            A.Rotate(limit=cfg.rotate_limit, border_mode=border, mask_interpolation=nearest, p=cfg.rotate_p),
            A.Affine(
                translate_percent=(-cfg.shift_limit, cfg.shift_limit),
                scale=(1 - cfg.scale_limit, 1 + cfg.scale_limit),
                rotate=(-cfg.affine_rotate_limit, cfg.affine_rotate_limit),
                border_mode=border,
                mask_interpolation=nearest,
                p=cfg.affine_p,
            ),
            A.RandomBrightnessContrast(
                brightness_limit=cfg.brightness_limit, contrast_limit=cfg.contrast_limit, p=cfg.brightness_contrast_p
            ),
            A.GaussNoise(std_range=noise_std_range(cfg.noise_var_limit), p=cfg.noise_p),
            A.GaussianBlur(blur_limit=cfg.blur_limit, p=cfg.blur_p),
            A.RandomGamma(gamma_limit=cfg.gamma_limit, p=cfg.gamma_p),
        ]
    )


def seed_augmentation(pipeline: A.Compose, seed: int) -> None:
    """Give each transform of `pipeline` its own random stream derived from `seed`.
    (Compose.set_random_seed gives every transform the same seed, which makes their coin flips
    identical: flip and rotate would always happen together.)"""
    children = np.random.SeedSequence(seed).spawn(len(pipeline.transforms) + 1)
    pipeline.set_random_seed(int(children[0].generate_state(1)[0]))
    for transform, child in zip(pipeline.transforms, children[1:]):
        transform.set_random_seed(int(child.generate_state(1)[0]))
