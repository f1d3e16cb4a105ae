"""OpenCV's Haar cascades (frontal, and profile both ways), merged by non-maximum suppression."""
from __future__ import annotations

import cv2
import numpy as np

from tcdcn.detection.base import MIN_FACE, Calibration, Search, nms
from tcdcn.models import shared


def _load_cascades():
    if not hasattr(cv2, "CascadeClassifier"):
        raise ImportError(f"OpenCV {cv2.__version__} has no Haar cascades "
                          "(cv2.CascadeClassifier, removed in OpenCV 5): use detector='mtcnn' "
                          "(the default), or OpenCV 4 ('opencv-python-headless<5')")
    base = cv2.data.haarcascades
    frontal = cv2.CascadeClassifier(base + "haarcascade_frontalface_default.xml")
    profile = cv2.CascadeClassifier(base + "haarcascade_profileface.xml")
    if frontal.empty() or profile.empty():
        raise RuntimeError(f"OpenCV's Haar cascades are missing from {base}")
    return frontal, profile


class HaarDetector:
    """Frontal + profile (both directions) Haar cascades, merged by non-maximum suppression."""

    def __init__(self, calibration: Calibration | None = None, min_size: int = MIN_FACE,
                 sharing: str = "copies"):
        # OpenCV's CascadeClassifier keeps working buffers: one pair per thread (or a lock)
        self.cascades = shared(_load_cascades, sharing)
        self.calibration = calibration or Calibration()
        self.min_size = min_size

    def describe(self) -> dict:
        return {"type": "haar", "min_size": self.min_size}

    def _run(self, cascade, grey) -> tuple[np.ndarray, np.ndarray]:
        rects, _, weights = cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=4, minSize=(self.min_size, self.min_size),
            outputRejectLevels=True)
        if len(rects) == 0:
            return np.zeros((0, 4)), np.zeros(0)
        rects = np.asarray(rects, dtype=np.float64)
        boxes = np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2],
                          rects[:, 1] + rects[:, 3]], axis=1)
        return boxes, np.asarray(weights, dtype=np.float64).ravel()

    def raw(self, grey: np.ndarray, search: Search | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated boxes (left, top, right, bottom) and scores, best first."""
        w = grey.shape[1]
        with self.cascades.use() as (frontal, profile):
            fb, fs = self._run(frontal, grey)
            pb, ps = self._run(profile, grey)
            qb, qs = self._run(profile, cv2.flip(grey, 1))
        if len(qb):
            qb = np.stack([w - qb[:, 2], qb[:, 1], w - qb[:, 0], qb[:, 3]], axis=1)
        # profile scores are on another scale: rank them below frontal detections
        boxes = np.concatenate([fb, pb, qb])
        scores = np.concatenate([fs + 100.0, ps, qs])
        if len(boxes) == 0:
            return boxes, scores
        keep = nms(boxes, scores)
        return boxes[keep], scores[keep]

    def __call__(self, grey: np.ndarray, search: Search | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.raw(grey)
        return self.calibration.apply(boxes), scores
