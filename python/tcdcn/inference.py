"""Running a trained TCDCN model: face box -> 40x40 crop -> landmarks and attributes.

A model folder holds deploy.prototxt, a .caffemodel and model.json (the self-description:
input size, normalisation, scheme, attribute names, detector calibration, numbers).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tcdcn.augment import apply_matrix, crop_matrix, denormalise, invert_matrix, \
    square_crop, warp
from tcdcn.schemes import SCHEMES, TASKS


@dataclass
class Face:
    box: np.ndarray                    # left, top, right, bottom (image pixels)
    score: float                       # detector score (1.0 for given boxes)
    landmarks: np.ndarray              # K x 2, image pixels
    attributes: dict = field(default_factory=dict)  # task -> (label, probability)

    @property
    def pose(self) -> str | None:
        return self.attributes.get("pose", (None, None))[0]

    def as_dict(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
                "attributes": {k: {"label": v[0], "probability": round(v[1], 4)}
                               for k, v in self.attributes.items()}}


def to_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


class LandmarkModel:
    """A trained model through pycaffe, run on boxes in batches."""

    def __init__(self, folder: str | Path, batch: int = 64):
        import caffe
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "model.json").read_text())
        self.size = int(self.meta["input"]["size"])
        self.scheme = SCHEMES[self.meta["landmark_scheme"]]
        self.tasks = [t for t in TASKS if t.name in self.meta.get("attributes", {})]
        caffe.set_mode_cpu()
        self.batch = batch
        self.net = caffe.Net(str(self.folder / self.meta["files"]["deploy"]), caffe.TEST,
                             weights=str(self.folder / self.meta["files"]["weights"]))
        self._set_batch(batch)

    def _set_batch(self, n: int) -> None:
        self.net.blobs["data"].reshape(n, 1, self.size, self.size)
        self.net.reshape()
        self._batch = n

    def crops(self, grey: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The input crops (F x 1 x S x S) and their source->crop matrices."""
        crops, mats = [], []
        for box in boxes:
            centre, side = square_crop(box)
            m = crop_matrix(centre, side, self.size)
            crops.append(warp(grey, m, self.size))
            mats.append(m)
        return np.array(crops, dtype=np.float32)[:, None], mats

    def forward(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs for F crops: landmarks in crop units, class probabilities."""
        outs: dict[str, list] = {}
        for start in range(0, len(crops), self.batch):
            chunk = crops[start:start + self.batch]
            if len(chunk) != self._batch:
                self._set_batch(len(chunk))
            self.net.blobs["data"].data[...] = chunk
            result = self.net.forward()
            for k, v in result.items():
                outs.setdefault(k, []).append(v.copy())
        return {k: np.concatenate(v) for k, v in outs.items()}

    def predict(self, image: np.ndarray, boxes: np.ndarray, scores=None) -> list[Face]:
        """Faces for the given boxes of one image (BGR, BGRA or grey)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        grey = to_grey(image)
        crops, mats = self.crops(grey, boxes)
        out = self.forward(crops)
        faces = []
        for i, (box, m) in enumerate(zip(boxes, mats)):
            pts = denormalise(out["landmarks"][i].reshape(-1, 2), self.size)
            attributes = {}
            for task in self.tasks:
                p = out[f"{task.name}_prob"][i].ravel()
                k = int(p.argmax())
                attributes[task.name] = (task.classes[k], float(p[k]))
            faces.append(Face(box=box, score=1.0 if scores is None else float(scores[i]),
                              landmarks=apply_matrix(invert_matrix(m), pts),
                              attributes=attributes))
        return faces
