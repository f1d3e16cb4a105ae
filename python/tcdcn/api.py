"""The Python API: find faces in an image and return their landmarks and attributes.

    from tcdcn.api import Detector
    faces = Detector()("photo.jpg")          # list of Face (empty when there is none)
    for f in faces: print(f.box, f.landmarks, f.attributes)
    Detector("tcdcn_68pt")("photo.jpg")      # 68 points; f.five_points works with either
"""
from __future__ import annotations

import numbers
from pathlib import Path

import cv2
import numpy as np

from tcdcn.boxes import check_boxes
from tcdcn.detection.base import MIN_FACE
from tcdcn.detection.factory import DetectorSettings, make_detector
from tcdcn.detection.search import TURN_RETRY_BELOW
from tcdcn.face import Face
from tcdcn.image import load_image, to_grey
from tcdcn.landmarks import LandmarkModel
from tcdcn.models import DEFAULT_MODEL, resolve_model
from tcdcn.schemes import IBUG68_CONTOURS

MAX_SIDE = 2048            # larger images are searched downscaled (boxes scaled back)


class Detector:
    """Face detection (MTCNN by default, the models ship in the package; or OpenCV's Haar
    cascades), crops placed as the model's measurements chose (model.json), then the TCDCN
    model. `backend` ("auto", "caffe", "onnx", "opencv") is where the landmark model and
    S-Net run; MTCNN's own nets run in OpenCV dnn, or in onnxruntime with "onnx".

    One Detector can be shared by threads: it holds configuration and loaded nets only
    (one copy of each net per thread that uses it; sharing="lock" keeps one behind a lock
    instead), and each call keeps what it computes to itself."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, batch: int = 64,
                 min_face: int = MIN_FACE, detector: str = "mtcnn",
                 mtcnn: str | Path | None = None, backend: str = "auto",
                 refine: int | None = None, pad="auto", crop_from: str | None = None,
                 turns="auto", proposals: str = "snet", sharing: str = "copies",
                 turn_retry_below: float = TURN_RETRY_BELOW, flip: bool | None = None,
                 attributes: bool = True):
        if not isinstance(min_face, numbers.Integral) or min_face < 12:
            raise ValueError(f"min_face must be a whole number of pixels >= 12 (MTCNN's "
                             f"smallest window), not {min_face!r}")
        # pad: a border for tight crops, so that faces touching the edges are found ("auto"
        # is search.DEFAULT_PADS: 10%, else 25%, else 50% while no face scored 0.9; 0 for
        # none). turns: where the upright image has no confident face, it is searched
        # turned (MTCNN only; "auto" is search.DEFAULT_TURNS: quarter turns 90, 180, 270
        # and tilts of 30 degrees either way, 30 and 330; the most confident face wins; ()
        # for none). proposals: MTCNN's first stages, "snet" (the single-shot S-Net; the
        # classic P-Net + R-Net search only where it finds no face at all) or "pnet"
        self.settings = DetectorSettings(name=detector, proposals=proposals,
                                         min_face=int(min_face), pad=pad, turns=turns,
                                         crop_from=crop_from,
                                         mtcnn_dir=Path(mtcnn) if mtcnn else None,
                                         turn_retry_below=turn_retry_below,
                                         sharing=sharing)
        self.model = LandmarkModel(resolve_model(model), batch=batch, backend=backend,
                                   sharing=sharing)
        # faster, where a user chooses (docs/detector.md measures both): flip=False skips
        # the mirrored second pass (model.json's test_time_flip otherwise); attributes=False
        # asks the net for the landmarks only, and faces carry no attributes
        if flip is not None:
            self.model.flip = bool(flip)
        if not attributes:
            self.model.tasks = []
            self.model.outputs = ["landmarks"]
        self.detector = make_detector(self.model, self.settings)
        self.wants_colour = detector == "mtcnn"
        # a second, re-centred pass only where the model's measurements say it helps
        self.refine = check_refine(refine if refine is not None
                                   else int(self.model.meta.get("refine", 0)))

    def __repr__(self) -> str:
        return (f"Detector(model={self.model.folder.name!r}, backend={self.model.backend!r}, "
                f"detector={self.settings.name!r}, proposals={self.settings.proposals!r})")

    def describe(self) -> dict:
        """What this detector is made of: the landmark model, the face search's settings and
        graph (factory.BuiltDetector.describe)."""
        return {"model": str(self.model.folder), "backend": self.model.backend,
                "refine": self.refine, "detector": self.detector.describe()}

    def __call__(self, image, boxes=None) -> list[Face]:
        image = load_image(image)
        grey = to_grey(image)
        if boxes is None:
            boxes, scores = self.detect_oriented(image if self.wants_colour else grey)
        else:
            boxes, scores = check_boxes(boxes, grey.shape), None
        return self.model.predict(grey, boxes, scores, refine=self.refine)

    def detect(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated face boxes in image pixels; large images are searched downscaled."""
        boxes, scores = self.detect_oriented(grey)
        return boxes[:, :4], scores

    def detect_oriented(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """detect()'s boxes with a fifth value: the turn (degrees clockwise) that makes each
        face upright (search.Turned; 0 for upright faces)."""
        scale = min(1.0, MAX_SIDE / max(image.shape[:2]))
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale,
                                                      interpolation=cv2.INTER_AREA)
        boxes, scores = self.detector.oriented(small)
        boxes[:, :4] /= scale
        return boxes, scores

    def batch(self, images: list, errors: list | None = None) -> list[list[Face]]:
        """All faces of many images, their crops through the net together (in batches of
        the model's batch size): the same results as calling the detector on each image.

        An image that cannot be read (missing, corrupt, not an image) raises an ImageError
        that names its place in the list; unless `errors` is a list: then that image's
        result is an empty list, and (index, exception) is appended to `errors`, so the
        good images' faces come back and the bad ones are counted."""
        loaded: list = []
        for i, im in enumerate(images):
            try:
                loaded.append(load_image(im))
            except (OSError, ValueError) as err:
                if errors is None:
                    raise ImageError(i, err) from err
                errors.append((i, err))
                loaded.append(None)
        results: list[list[Face]] = [[] for _ in images]
        good = [i for i, im in enumerate(loaded) if im is not None]
        if self.refine:   # the second pass is per image
            for i in good:
                results[i] = self(loaded[i])
            return results
        greys = {i: to_grey(loaded[i]) for i in good}
        found = {i: self.detect_oriented(loaded[i] if self.wants_colour else greys[i])
                 for i in good}
        crops, mats, owner = [], [], []
        for i in good:
            c, m = self.model.crops(greys[i], found[i][0])
            crops.append(c)
            mats += m
            owner += [i] * len(found[i][0])
        if not owner:
            return results
        out = self.model.forward(np.concatenate(crops))
        faces = self.model.faces_from_outputs(out, np.concatenate([found[i][0] for i in good]),
                                              mats, np.concatenate([found[i][1] for i in good]))
        for i, face in zip(owner, faces):
            results[i].append(face)
        return results


MAX_REFINE = 5   # re-centred passes; the released models use 0 or 1


def check_refine(refine) -> int:
    if isinstance(refine, bool) or not isinstance(refine, numbers.Integral) \
            or not 0 <= refine <= MAX_REFINE:
        raise ValueError(f"refine must be a whole number of passes from 0 to {MAX_REFINE}, "
                         f"not {refine!r}")
    return int(refine)


class ImageError(ValueError):
    """An image of Detector.batch's list that could not be read: `index` is its place in
    the list, `error` what went wrong (the message names the file where there is one)."""

    def __init__(self, index: int, error: Exception):
        super().__init__(f"image {index} of the batch: {error}")
        self.index, self.error = index, error


def draw(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of the image with boxes, points and attribute labels drawn; where a face has
    an uncertainty (Face.uncertainty), a ring about each point with that radius (its
    predicted error in pixels) and the face's quality under the labels."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale = max(1, round(max(out.shape[:2]) / 400))
    for f in faces:
        l, t, r, b = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (l, t), (r, b), (255, 200, 0), scale)
        if f.scheme == "68pt":   # contours of jaw, brows, nose, eyes and lips
            for idx, closed in IBUG68_CONTOURS:
                pts = np.round(f.landmarks[list(idx)]).astype(np.int32)
                cv2.polylines(out, [pts], closed, (0, 255, 0), max(1, scale // 2), cv2.LINE_AA)
        radius = scale if f.scheme == "68pt" else 2 * scale
        for x, y in f.landmarks:
            cv2.circle(out, (int(round(x)), int(round(y))), radius, (0, 0, 255), -1)
        if f.uncertainty is not None:
            for (x, y), u in zip(f.landmarks, f.uncertainty):
                cv2.circle(out, (int(round(x)), int(round(y))), max(radius + 1, int(round(u))),
                           (0, 200, 255), max(1, scale // 2), cv2.LINE_AA)
        lines = [f"{k}: {v[0]} {v[1]:.2f}" for k, v in f.attributes.items()]
        if f.quality is not None:
            lines.append(f"quality: {f.quality:.2f}")
        for i, text in enumerate(lines):
            cv2.putText(out, text, (l, b + (14 * (i + 1)) * scale), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * scale, (255, 255, 0), max(1, scale // 2))
    return out
