"""Face crops and their augmentation: one affine transform moves image and points together.

Conventions (pixel centres at integer coordinates, as OpenCV and the data lists use):
- A crop is a square of side `s` centred at `c`, rotated by `angle` degrees, resampled to
  `size` x `size` pixels. Its left edge is x = -0.5 in output pixels, its right edge
  size - 0.5.
- Landmark targets are crop coordinates divided by the crop size: (x_out + 0.5) / size, so
  0 is the crop's left (top) edge and 1 its right (bottom) edge; points may fall outside.
- The default crop is the face box itself, made square about its centre (CROP_MARGIN = 0).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from tcdcn.geometry import apply_matrix, crop_matrix, normalise, warp
from tcdcn.schemes import POSE_FLIP, POSE_INDEX, LandmarkScheme


def mirror_labels(points: np.ndarray, attributes: np.ndarray | None,
                  scheme: LandmarkScheme) -> tuple[np.ndarray, np.ndarray | None]:
    """Reorder points and swap pose after a horizontal flip (the x flip itself is done by
    the transform): left eye becomes right eye, left pose becomes right pose."""
    points = points[scheme.flip_permutation()]
    if attributes is not None and attributes[POSE_INDEX] >= 0:   # < 0: unlabelled
        attributes = attributes.copy()
        attributes[POSE_INDEX] = POSE_FLIP[int(attributes[POSE_INDEX])]
    return points, attributes


@dataclass(frozen=True)
class AugmentConfig:
    """Random amounts per sample; all ranges uniform."""
    max_angle: float = 30.0        # degrees, both ways
    min_scale: float = 0.9         # crop side / box side: < 1 zooms in
    max_scale: float = 1.4         # > 1 zooms out (at 1.4 the collar shows)
    max_shift: float = 0.08        # crop centre shift, fraction of the crop side
    mirror_p: float = 0.5
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    max_brightness: float = 20.0   # added to 0..255 pixel values, both ways
    max_contrast: float = 0.2      # multiplier 1 +- this
    keep_margin: float = 0.05      # every point within [-m, 1 + m] of the crop, else redraw
    max_redraws: int = 20

    def as_dict(self) -> dict:
        return asdict(self)

    def spread(self, s: float) -> "AugmentConfig":
        """The geometric ranges (angle, scale, shift) widened (s > 1) or narrowed (s < 1)
        about their centres: the mean crop stays where it is, s = 1 is this config."""
        if s < 0:
            raise ValueError(f"augmentation spread must be >= 0, not {s}")
        if s == 1:
            return self   # exactly (no rounding in the manifest's numbers)
        centre, half = (self.min_scale + self.max_scale) / 2, (self.max_scale - self.min_scale) / 2
        return replace(self, max_angle=self.max_angle * s, min_scale=centre - half * s,
                       max_scale=centre + half * s, max_shift=self.max_shift * s)


@dataclass
class Draw:
    angle: float
    scale: float
    shift: tuple[float, float]
    mirror: bool
    jpeg_quality: int | None
    brightness: float
    contrast: float


def draw_params(rng: np.random.Generator, cfg: AugmentConfig) -> Draw:
    return Draw(
        angle=float(rng.uniform(-cfg.max_angle, cfg.max_angle)),
        scale=float(rng.uniform(cfg.min_scale, cfg.max_scale)),
        shift=(float(rng.uniform(-cfg.max_shift, cfg.max_shift)),
               float(rng.uniform(-cfg.max_shift, cfg.max_shift))),
        mirror=bool(rng.random() < cfg.mirror_p),
        jpeg_quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        if rng.random() < cfg.jpeg_p else None,
        brightness=float(rng.uniform(-cfg.max_brightness, cfg.max_brightness)),
        contrast=float(rng.uniform(1 - cfg.max_contrast, 1 + cfg.max_contrast)),
    )


def draw_matrix(d: Draw, centre, side: float, size: int) -> np.ndarray:
    crop_side = side * d.scale
    c = np.asarray(centre, dtype=np.float64) + np.array(d.shift) * crop_side
    return crop_matrix(c, crop_side, size, d.angle, d.mirror)




def photometric(image: np.ndarray, d: Draw) -> np.ndarray:
    out = image.astype(np.float32) * d.contrast + d.brightness
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if d.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, d.jpeg_quality])
        flags = cv2.IMREAD_GRAYSCALE if out.ndim == 2 else cv2.IMREAD_COLOR
        out = cv2.imdecode(buf, flags)
    return out


def augment(image: np.ndarray, points: np.ndarray, attributes: np.ndarray | None,
            centre, side: float, size: int, scheme: LandmarkScheme,
            rng: np.random.Generator, cfg: AugmentConfig
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """One augmented crop: (image size x size, targets K x 2, attributes, redraws).

    A draw that pushes a landmark beyond `keep_margin` outside the crop is redrawn; after
    `max_redraws` the plain (unaugmented) crop is used.
    """
    for redraws in range(cfg.max_redraws + 1):
        d = draw_params(rng, cfg)
        m = draw_matrix(d, centre, side, size)
        targets = normalise(apply_matrix(m, points), size)
        if np.all((targets >= -cfg.keep_margin) & (targets <= 1 + cfg.keep_margin)):
            break
    else:
        d = Draw(0.0, 1.0, (0.0, 0.0), False, None, 0.0, 1.0)
        m = draw_matrix(d, centre, side, size)
        targets = normalise(apply_matrix(m, points), size)
    if d.mirror:
        targets, attributes = mirror_labels(targets, attributes, scheme)
    return photometric(warp(image, m, size), d), targets, attributes, redraws
