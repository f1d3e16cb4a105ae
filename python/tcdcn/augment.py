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

import math
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from tcdcn.schemes import POSE_FLIP, POSE_INDEX, LandmarkScheme

CROP_MARGIN = 0.0  # extra border around the box, as a fraction of its side, on each side
CANONICAL_BOX = 1.5      # box side in the canonical region, in output crop sizes
CANONICAL_REGION = 2.6   # region side / box side: room for scale 1.4, 30 degrees, shifts


def square_crop(box: np.ndarray, margin: float = CROP_MARGIN) -> tuple[np.ndarray, float]:
    """Centre and side of the square crop of a box (left, top, right, bottom)."""
    left, top, right, bottom = (float(v) for v in box)
    centre = np.array([(left + right) / 2.0, (top + bottom) / 2.0])
    side = max(right - left, bottom - top) * (1.0 + 2.0 * margin)
    return centre, side


def crop_matrix(centre, side: float, size: int, angle: float = 0.0,
                mirror: bool = False) -> np.ndarray:
    """2x3 matrix taking source pixel coordinates to output pixel coordinates."""
    k = size / side
    a = math.radians(angle)
    cos, sin = math.cos(a) * k, math.sin(a) * k
    # rotate the source about the crop centre by -angle, scale to the output, centre it
    m = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])
    m[:, 2] = -m[:, :2] @ np.asarray(centre, dtype=np.float64) + size / 2.0 - 0.5
    if mirror:
        m[0] = -m[0]
        m[0, 2] += size - 1.0
    return m


def apply_matrix(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def invert_matrix(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def compose(m2: np.ndarray, m1: np.ndarray) -> np.ndarray:
    """The affine map m2 after m1 (both 2x3)."""
    return np.hstack([m2[:, :2] @ m1[:, :2], (m2[:, :2] @ m1[:, 2] + m2[:, 2])[:, None]])


def face_region(image: np.ndarray, centre, side: float, size: int,
                crop_scale: float | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The one crop path of training and inference, first step: a square region of
    CANONICAL_REGION box sides around the box, resampled so that the box is CANONICAL_BOX
    crop sizes wide. Faces more than twice that size are first shrunk with area averaging
    (a bilinear warp alone would alias). Returns (region, matrix from image pixels to
    region pixels, box centre and box side in region pixels); region_crop() then cuts the
    net's input out of it, augmented or not. crop_scale (face_crop): only the rows and
    columns an unaugmented crop of that scale reads are resampled, the region's first ones
    up to crop_scale / 2 box sides past its centre and the bilinear neighbour (a third of
    the time at scale 1); warpAffine computes each output pixel from its own coordinates,
    so they are the same pixels."""
    box_px = CANONICAL_BOX * size
    region_px = int(round(CANONICAL_REGION * box_px))
    pre = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    centre = np.asarray(centre, dtype=np.float64)
    if box_px / side < 0.5:
        h, w = image.shape[:2]
        image = cv2.resize(image, None, fx=2 * box_px / side, fy=2 * box_px / side,
                           interpolation=cv2.INTER_AREA)
        scale = np.array([image.shape[1] / w, image.shape[0] / h])
        # pixel centres: u -> (u + 0.5) * s - 0.5
        pre = np.array([[scale[0], 0.0, 0.5 * scale[0] - 0.5],
                        [0.0, scale[1], 0.5 * scale[1] - 0.5]])
        centre = apply_matrix(pre, centre[None])[0]
        side = side * float(scale.mean())
    m = crop_matrix(centre, side * CANONICAL_REGION, region_px)
    c = (region_px - 1) / 2.0
    extent = region_px
    if crop_scale is not None:
        extent = min(region_px, int(math.ceil(c + crop_scale * box_px / 2.0)) + 2)
    region = warp(image, m, extent)
    return region, compose(m, pre), np.array([c, c]), float(region_px / CANONICAL_REGION)


def region_crop(region: np.ndarray, centre, side: float, size: int, scale: float = 1.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """The unaugmented crop of a face_region(): a square of `scale` box sides about the box
    centre. Returns (crop, matrix from region pixels to crop pixels)."""
    m = crop_matrix(centre, side * scale, size)
    return warp(region, m, size), m


def face_crop(image: np.ndarray, box, size: int, scale: float = 1.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """The net's input for a face box, exactly as the validation LMDB holds it: (crop,
    matrix from image pixels to crop pixels)."""
    centre, side = square_crop(box)
    region, m1, c, s = face_region(image, centre, side, size, crop_scale=scale)
    crop, m2 = region_crop(region, c, s, size, scale)
    return crop, compose(m2, m1)


def normalise(points_out: np.ndarray, size: int) -> np.ndarray:
    """Output pixel coordinates -> targets in crop units (0..1 across the crop)."""
    return (points_out + 0.5) / size


def denormalise(targets: np.ndarray, size: int) -> np.ndarray:
    return targets * size - 0.5


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


def warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


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
