"""The Python API: find faces in an image and return their landmarks and attributes.

    from tcdcn.api import Detector
    faces = Detector()("photo.jpg")          # list of Face (empty when there is none)
    for f in faces: print(f.box, f.landmarks, f.attributes)
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tcdcn.inference import Face, LandmarkModel, to_grey

DEFAULT_MODEL = Path(__file__).resolve().parent.parent.parent / "models" / "tcdcn_5pt"


def load_image(image) -> np.ndarray:
    """A path, or a BGR / BGRA / grey array, as an 8-bit array."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such image")
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise ValueError(f"{path}: not an image OpenCV can decode")
        image = data
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image / 257).astype(np.uint8)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected an 8-bit grey or colour image, got {image.dtype} {image.shape}")
    return image


class Detector:
    """Haar face detection (calibrated to the training boxes) + the TCDCN model."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, batch: int = 64, min_face: int = 20):
        from tcdcn.detect import Calibration, HaarDetector
        self.model = LandmarkModel(model, batch=batch)
        calib = self.model.meta.get("detector_calibration", {}).get("haar", {})
        self.detector = HaarDetector(Calibration(**calib), min_size=min_face)

    def __call__(self, image, boxes=None) -> list[Face]:
        image = load_image(image)
        grey = to_grey(image)
        if boxes is None:
            boxes, scores = self.detector(grey)
        else:
            boxes, scores = np.asarray(boxes, dtype=np.float64).reshape(-1, 4), None
        return self.model.predict(grey, boxes, scores)


def draw(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of the image with boxes, points and attribute labels drawn."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale = max(1, round(max(out.shape[:2]) / 400))
    for f in faces:
        l, t, r, b = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (l, t), (r, b), (255, 200, 0), scale)
        for x, y in f.landmarks:
            cv2.circle(out, (int(round(x)), int(round(y))), 2 * scale, (0, 0, 255), -1)
        lines = [f"{k}: {v[0]} {v[1]:.2f}" for k, v in f.attributes.items()]
        for i, text in enumerate(lines):
            cv2.putText(out, text, (l, b + (14 * (i + 1)) * scale), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * scale, (255, 255, 0), max(1, scale // 2))
    return out
