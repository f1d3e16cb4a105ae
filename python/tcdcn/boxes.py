"""Face boxes derived from landmarks, calibrated to the training boxes' convention.

Where a face has no box (the AFLW test faces, 300-W), one is derived from its points:
  m = mean of the five points, r = their RMS distance from m,
  box centre = m + (dx, dy) * r,  box side = k * r   (a square).
(dx, dy, k) are the medians over MTFL's training faces of the same quantities measured on
their CNN_FacePoint boxes, so derived boxes match the training convention on average.
The evaluation derives boxes with the same rule.

68-point faces (300-W) have their own rule, IBUG68_BOX_RULE: the same reference (m, r of
the 5-point equivalent: eye centres, nose tip, mouth corners, so that any source of five
points, MTCNN's included, can place a 68-point crop), fitted to the extent of all 68 points
(jaw to brows) on the 300-W training split: on the median face 94% of the points lie
in the box and all of them in a crop of 1.2 box sides.
`box_from_landmarks` picks the rule by the number of points.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Eye centres (means of each eye's six points), nose tip, mouth corners, in iBUG-68 indices.
_IBUG68_TO_5 = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,))


@dataclass(frozen=True)
class BoxRule:
    dx: float
    dy: float
    k: float
    fitted_on: str = ""
    n_faces: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


# Fitted with `fit_box_rule` on the 10,000 MTFL training faces and their CNN_FacePoint
# boxes (tests/test_boxes.py refits it on the shared data and checks these values).
MTFL_BOX_RULE = BoxRule(dx=-0.0369, dy=-0.0578, k=3.2586,
                        fitted_on="MTFL training.txt + CNN_FacePoint boxes", n_faces=10000)


# Fitted with `fit_box_rule(points, [extent_box(p) for p in points])` on the 300-W faces
# of ../shared/data/300W outside the validation split (tools/make_lmdb.py --dataset 300w
# --seed 0, val fraction 0.1, by image); tests/test_boxes.py refits it.
IBUG68_BOX_RULE = BoxRule(dx=-0.0176, dy=0.2440, k=3.7030,
                          fitted_on="300-W AFW + HELEN train, training split: extent of the 68 points",
                          n_faces=1086)


def extent_box(points: np.ndarray) -> np.ndarray:
    """(left, top, right, bottom) of the points themselves."""
    p = np.asarray(points, dtype=np.float64)
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


def rule_for(n_points: int) -> BoxRule:
    """The box rule of a landmark scheme, by its number of points."""
    if n_points == 68:
        return IBUG68_BOX_RULE
    if n_points == 5:
        return MTFL_BOX_RULE
    raise ValueError(f"no box rule for {n_points} points")


def five_points(points: np.ndarray) -> np.ndarray:
    """The five MTFL points of a 5- or 68-point annotation."""
    if len(points) == 5:
        return points
    if len(points) == 68:
        return np.array([points[list(idx)].mean(axis=0) for idx in _IBUG68_TO_5])
    raise ValueError(f"no 5-point equivalent for {len(points)} points")


def reference(points: np.ndarray) -> tuple[np.ndarray, float]:
    p = five_points(np.asarray(points, dtype=np.float64))
    m = p.mean(axis=0)
    r = float(np.sqrt(np.mean(np.sum((p - m) ** 2, axis=1))))
    return m, r


def box_from_landmarks(points: np.ndarray, rule: BoxRule = None) -> np.ndarray:
    """(left, top, right, bottom) of the derived square box (the scheme's rule by default)."""
    rule = rule or rule_for(len(points))
    return boxes_from_five_points(five_points(np.asarray(points, dtype=np.float64)), rule)[0]


def boxes_from_five_points(points: np.ndarray, rule: BoxRule) -> np.ndarray:
    """The rule's boxes for N faces' five points at once (N x 5 x 2 -> N x 4; the detector's
    faces, search.FromPoints): centred at the points' mean (reference) moved by (dx, dy) r,
    k r wide, r the points' RMS distance from their mean."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    m = p.mean(axis=1)
    r = np.sqrt(np.mean(np.sum((p - m[:, None]) ** 2, axis=2), axis=1))
    centre = m + np.array([rule.dx, rule.dy]) * r[:, None]
    half = rule.k * r / 2.0
    return np.stack([centre[:, 0] - half, centre[:, 1] - half, centre[:, 0] + half,
                     centre[:, 1] + half], axis=1)


def fit_box_rule(points: list[np.ndarray], boxes: list[np.ndarray], fitted_on: str = "") -> BoxRule:
    """Medians of the box-centre offset and box side, in units of r, over faces with boxes."""
    offsets, sides = [], []
    for p, box in zip(points, boxes):
        m, r = reference(p)
        if r <= 0:
            continue
        left, top, right, bottom = box
        centre = np.array([(left + right) / 2.0, (top + bottom) / 2.0])
        offsets.append((centre - m) / r)
        sides.append(max(right - left, bottom - top) / r)
    if not sides:
        raise ValueError("no faces with boxes to fit the box rule on")
    offsets = np.array(offsets)
    return BoxRule(dx=float(np.median(offsets[:, 0])), dy=float(np.median(offsets[:, 1])),
                   k=float(np.median(sides)), fitted_on=fitted_on, n_faces=len(sides))


MIN_BOX_SIDE = 4.0      # pixels; a user's box smaller than this holds no face the model can see
MIN_BOX_INSIDE = 0.25   # share of a user's box that must lie in the image


def check_boxes(boxes, shape) -> np.ndarray:
    """Boxes a user gives (N x 4: left, top, right, bottom in pixels; one box may be a flat
    list of four) as an array, each checked: finite, at least MIN_BOX_SIDE wide and high,
    and at least MIN_BOX_INSIDE of it inside the image of `shape` (else its crop is mostly
    border, and its points and attributes would be made up). Errors name the box."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"boxes must be numbers (left, top, right, bottom per box), not "
                         f"{str(boxes)[:80]}") from None
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr.reshape(1, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be N x 4 (left, top, right, bottom), got shape {arr.shape}")
    h, w = shape[:2]
    for i, (left, top, right, bottom) in enumerate(arr):
        text = f"box {i} ({left:g}, {top:g}, {right:g}, {bottom:g})"
        if not np.isfinite(arr[i]).all():
            raise ValueError(f"{text}: not a finite number")
        if right - left < MIN_BOX_SIDE or bottom - top < MIN_BOX_SIDE:
            raise ValueError(f"{text}: empty, inverted or under {MIN_BOX_SIDE:g} px (right must "
                             "exceed left and bottom exceed top)")
        inside = (max(0.0, min(right, w) - max(left, 0.0))
                  * max(0.0, min(bottom, h) - max(top, 0.0)))
        if inside < MIN_BOX_INSIDE * (right - left) * (bottom - top):
            raise ValueError(f"{text}: {inside / ((right - left) * (bottom - top)):.0%} of it "
                             f"lies in the {w}x{h} image (at least {MIN_BOX_INSIDE:.0%} must)")
    return arr
