"""Synthetic images with known points and classes, for smoke tests and the setup demo."""
from __future__ import annotations

import numpy as np


def dot_images(n: int, size: int = 16, rng: np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` grey images, each with one bright Gaussian dot on a noisy background.

    Returns (images n x 1 x size x size uint8, points n x 2 as (x, y) / size,
    classes n int: 1 if the dot is in the right half, else 0).
    """
    rng = rng or np.random.default_rng(0)
    margin = 2.0
    points = rng.uniform(margin, size - 1 - margin, size=(n, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx = xx[None] - points[:, 0, None, None]
    dy = yy[None] - points[:, 1, None, None]
    images = 200.0 * np.exp(-(dx ** 2 + dy ** 2) / (2 * 1.5 ** 2))
    images += rng.normal(30.0, 8.0, size=images.shape)
    images = np.clip(images, 0, 255).astype(np.uint8)[:, None]
    classes = (points[:, 0] >= size / 2).astype(np.int64)
    return images, (points / size).astype(np.float32), classes
