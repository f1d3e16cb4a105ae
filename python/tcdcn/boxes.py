"""Face boxes derived from landmarks, calibrated to the training boxes' convention.

Where a face has no box (the AFLW test faces, 300-W), one is derived from its points:
  m = mean of the five points, r = their RMS distance from m,
  box centre = m + (dx, dy) * r,  box side = k * r   (a square).
(dx, dy, k) are the medians over MTFL's training faces of the same quantities measured on
their CNN_FacePoint boxes, so derived boxes match the training convention on average.
68-point faces use their 5-point equivalent (eye centres, nose tip, mouth corners).
The evaluation derives boxes with the same rule.
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
    """(left, top, right, bottom) of the derived square box."""
    rule = rule or MTFL_BOX_RULE
    m, r = reference(points)
    centre = m + np.array([rule.dx, rule.dy]) * r
    half = rule.k * r / 2.0
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


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
