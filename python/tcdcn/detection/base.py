"""What every detector shares: the box calibration, IoU, non-maximum suppression and the
per-call search context.

Detector boxes are not the boxes the model was trained on. A calibration, fitted on the
training faces (detections matched to their CNN_FacePoint boxes), maps a detection to the
training convention: centre += (dx, dy) * side, side *= scale. It is stored with the model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

# The smallest face searched for by default, in pixels (MTCNN's P-Net window is 12)
MIN_FACE = 20
# MTCNN's and S-Net's input scaling: (pixel - PIXEL_MEAN) * PIXEL_SCALE
PIXEL_MEAN, PIXEL_SCALE = 127.5, 1 / 128


@dataclass(frozen=True)
class Calibration:
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    n_faces: int = 0
    fitted_on: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def invert(self, boxes: np.ndarray) -> np.ndarray:
        """The detector-style square boxes that apply() maps onto these boxes."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / self.scale
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 - self.dx * side
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 - self.dy * side
        return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + self.dx * side
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.dy * side
        half = side * self.scale / 2
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a with every box of b ((left, top, right, bottom) edges)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou_matrix(a, b)[0, 0])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.3,
        mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression, the one used everywhere (Haar and MTCNN): indices of
    the kept boxes, best score first. Boxes are (left, top, right, bottom) edges. "union"
    drops a box whose IoU with a kept one exceeds `threshold` (OpenCV's cv2.dnn.NMSBoxes);
    "min" divides the intersection by the smaller box instead (MTCNN's last stage)."""
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', not {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if len(boxes) <= 1:   # nothing to suppress (the common case of one face)
        return np.zeros(len(boxes), dtype=int)
    if mode == "union":
        rects = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0],
                          boxes[:, 3] - boxes[:, 1]], axis=1)
        ranked = scores - scores.min() + 1.0   # OpenCV wants scores above a threshold >= 0
        keep = cv2.dnn.NMSBoxes(rects.tolist(), ranked.tolist(), 0.0, float(threshold))
        return np.asarray(keep, dtype=int).ravel()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        overlap = w * h / np.maximum(np.minimum(area[i], area[rest]), 1e-12)
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=int)


class Search:
    """What one image's search computes and may reuse: a context made for each call of a
    detector and handed down through the detectors it is made of, so that one detector
    object (configuration and loaded nets only) can serve many threads.

    `memo` keeps results of a stage for the images searched in this call (S-Net's
    proposals, the classic cascade's first two stages): the wider borders, the second
    looks and the last resort show those stages the same pixels again. `counts` tallies
    the crops each MTCNN net ran on (tools/mtcnn_recall.py reports them)."""

    def __init__(self, counts: dict | None = None):
        self._memo: dict = {}
        self.counts = counts if counts is not None else {}

    def memo(self, stage: str, key, image: np.ndarray, compute, keep: int = 1):
        """compute() for this stage, key and image, or its earlier result for the same
        pixels in this search (the stage keeps at most `keep` images)."""
        kept = self._memo.setdefault(stage, {})
        key = (key, image.shape)
        hit = kept.get(key)
        if hit is not None and np.array_equal(hit[0], image):
            return hit[1]
        result = compute()
        if key not in kept and len(kept) >= keep:
            kept.pop(next(iter(kept)))
        kept[key] = (image.copy(), result)
        return result

    def count(self, what, n: int) -> None:
        self.counts[what] = self.counts.get(what, 0) + int(n)


def fit_calibration(detector, images: list[np.ndarray], boxes: list[np.ndarray],
                    fitted_on: str = "", min_iou: float = 0.3) -> Calibration:
    """Medians of (true centre - detected centre) / detected side and true side / detected
    side over faces whose best-overlapping detection has IoU >= min_iou."""
    dxs, dys, scales = [], [], []
    for grey, truth in zip(images, boxes):
        found, _ = detector.raw(grey)
        if len(found) == 0:
            continue
        overlaps = [iou(f, truth) for f in found]
        best = int(np.argmax(overlaps))
        if overlaps[best] < min_iou:
            continue
        f = found[best]
        side = max(f[2] - f[0], f[3] - f[1])
        tside = max(truth[2] - truth[0], truth[3] - truth[1])
        dxs.append(((truth[0] + truth[2]) - (f[0] + f[2])) / 2 / side)
        dys.append(((truth[1] + truth[3]) - (f[1] + f[3])) / 2 / side)
        scales.append(tside / side)
    if not scales:
        raise ValueError("no detections matched a true box: cannot calibrate")
    return Calibration(dx=float(np.median(dxs)), dy=float(np.median(dys)),
                       scale=float(np.median(scales)), n_faces=len(scales), fitted_on=fitted_on)
