"""Affine geometry shared by training and inference: crop matrices, the face crop, image turns."""
from __future__ import annotations

import math

import cv2
import numpy as np

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


_ROTATE_CODES = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
                 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def is_quarter(angle) -> bool:
    return int(angle) % 90 == 0


def turn_image(image: np.ndarray, angle: int) -> np.ndarray:
    """The image turned clockwise by `angle` degrees: a quarter-turn multiple moves the
    pixels (no resampling); a tilt is resampled onto a canvas that holds the whole turned
    image (turn_matrix), its corners filled by replicating the edges."""
    angle = int(angle) % 360
    if angle == 0:
        return image
    if is_quarter(angle):
        return cv2.rotate(image, _ROTATE_CODES[angle])
    m, (w, h) = _tilt(angle, image.shape)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def _tilt(angle: int, shape) -> tuple[np.ndarray, tuple[int, int]]:
    """Matrix and canvas size (w, h) of a clockwise turn about the image centre (pixel
    centres: the image's centre is ((w - 1) / 2, (h - 1) / 2)) onto the smallest canvas
    holding the turned image."""
    h, w = shape[:2]
    a = np.deg2rad(angle)
    c, s = np.cos(a), np.sin(a)
    nw = int(np.ceil(abs(c) * w + abs(s) * h - 1e-9))
    nh = int(np.ceil(abs(s) * w + abs(c) * h - 1e-9))
    lin = np.array([[c, -s], [s, c]])
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    new_centre = np.array([(nw - 1) / 2, (nh - 1) / 2])
    return np.hstack([lin, (new_centre - lin @ centre)[:, None]]), (nw, nh)


def turn_matrix(angle: int, shape) -> np.ndarray:
    """2x3 map from pixel coordinates of an image of `shape` to those of turn_image()'s."""
    h, w = shape[:2]
    angle = int(angle) % 360
    if not is_quarter(angle):
        return _tilt(angle, shape)[0]
    return {0: np.array([[1.0, 0, 0], [0, 1, 0]]),
            90: np.array([[0.0, -1, h - 1], [1, 0, 0]]),
            180: np.array([[-1.0, 0, w - 1], [0, -1, h - 1]]),
            270: np.array([[0.0, 1, 0], [-1, 0, w - 1]])}[angle]


def upright_box(box, angle: int, shape) -> np.ndarray:
    """The box, in turn_image(angle)'s pixels, of a face whose box in the image is `box`
    (left, top, right, bottom) and whose turn is `angle`: the box mapped (quarter turns),
    or, for a tilt, the box of the same size about the mapped centre (turned_back's
    inverse)."""
    box = np.asarray(box, dtype=np.float64)[:4]
    return _recentre(box[None], turn_matrix(angle, shape), angle)[0]


def turned_back(boxes, angle: int, shape) -> np.ndarray:
    """Boxes found in turn_image(angle) (N x 4) as boxes in the image of `shape`: quarter
    turns map them; a tilted face keeps its box's size about its mapped centre (an
    axis-aligned square the size of the face, not the larger bounds of the tilted square)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    back = cv2.invertAffineTransform(turn_matrix(angle, shape))
    return _recentre(boxes, back, angle)


def _recentre(boxes: np.ndarray, m: np.ndarray, angle: int) -> np.ndarray:
    if is_quarter(angle):
        return map_boxes(boxes, m)
    centre = np.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], axis=1) / 2
    centre = centre @ m[:, :2].T + m[:, 2]
    half = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def map_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Axis-aligned boxes (N x 4) through an affine map: the image-axis bounds of the
    mapped boxes (the boxes themselves under quarter turns)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]], boxes[:, [2, 1]]],
                       axis=1)    # N x 4 x 2
    mapped = corners @ m[:, :2].T + m[:, 2]
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)


def with_turn(boxes, angle: int) -> np.ndarray:
    """N x 4 boxes as N x 5, the fifth value the turn that makes their faces upright."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.hstack([boxes, np.full((len(boxes), 1), float(angle))])


def warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
