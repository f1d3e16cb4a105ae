"""Face detection with OpenCV's bundled Haar cascades (frontal, and profile both ways),
calibrated to the training box convention.

Detector boxes are not the boxes the model was trained on. A calibration, fitted on the
training faces (detections matched to their CNN_FacePoint boxes), maps a detection to the
training convention: centre += (dx, dy) * side, side *= scale. It is stored with the model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


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


class HaarDetector:
    """Frontal + profile (both directions) Haar cascades, merged by non-maximum suppression."""

    def __init__(self, calibration: Calibration | None = None, min_size: int = 20):
        base = cv2.data.haarcascades
        self.frontal = cv2.CascadeClassifier(base + "haarcascade_frontalface_default.xml")
        self.profile = cv2.CascadeClassifier(base + "haarcascade_profileface.xml")
        if self.frontal.empty() or self.profile.empty():
            raise RuntimeError(f"OpenCV's Haar cascades are missing from {base}")
        self.calibration = calibration or Calibration()
        self.min_size = min_size

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

    def raw(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated boxes (left, top, right, bottom) and scores, best first."""
        w = grey.shape[1]
        fb, fs = self._run(self.frontal, grey)
        pb, ps = self._run(self.profile, grey)
        qb, qs = self._run(self.profile, cv2.flip(grey, 1))
        if len(qb):
            qb = np.stack([w - qb[:, 2], qb[:, 1], w - qb[:, 0], qb[:, 3]], axis=1)
        # profile scores are on another scale: rank them below frontal detections
        boxes = np.concatenate([fb, pb, qb])
        scores = np.concatenate([fs + 100.0, ps, qs])
        if len(boxes) == 0:
            return boxes, scores
        keep = nms(boxes, scores)
        return boxes[keep], scores[keep]

    def __call__(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.raw(grey)
        return self.calibration.apply(boxes), scores


def fit_calibration(detector: HaarDetector, images: list[np.ndarray], boxes: list[np.ndarray],
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


# The borders detection adds by default, as fractions of the image's longer side: first 0.1
# (faces that touch the edge of a tight crop, such as AFLW's 150x150 images, are found, at
# about 20% more detection time), then, only where no face scored PAD_RETRY_BELOW, 0.25, then
# 0.5 (faces larger than the image); the most confident search wins. Chosen on validation
# faces framed like AFLW's test images (evaluation.framed_faces; tools/mtcnn_recall.py,
# benchmarks/mtcnn_recall.json): 19 -> 8 of 4,000 missed against (0.1, 0.25) tried only
# where nothing was found; 300-W AFW + HELEN train 3 -> 2 of 1,207.
DEFAULT_PADS = (0.1, 0.25, 0.5)
PAD_RETRY_BELOW = 0.9


def pad_list(pad) -> tuple[float, ...]:
    """A pad (a fraction, or "auto" / None for DEFAULT_PADS) or a sequence of pads."""
    if pad is None or pad == "auto":
        return DEFAULT_PADS
    pads = tuple(float(p) for p in (pad if isinstance(pad, (list, tuple)) else (pad,)))
    if not pads or any(p < 0 for p in pads):
        raise ValueError(f"pad must be 'auto', a fraction >= 0 or a list of them, not {pad!r}")
    return pads


def describe_pads(pad) -> str:
    pads = pad_list(pad)
    if pads == (0.0,):
        return "no border"
    return "image padded by " + ", else ".join(f"{p:.0%}" for p in pads)


class Padded:
    """Runs a detector on the image with a replicated border of `pad` x its longer side, so
    that faces touching the image edge (tight crops such as AFLW's) can still be found;
    boxes come back in the original image's coordinates, then get the calibration. With a
    sequence of pads, the next one is tried only while none found a face scoring at least
    `retry_below`, and the search whose best face scores highest wins."""

    def __init__(self, detector, pad, retry_below: float = PAD_RETRY_BELOW):
        self.detector, self.pads = detector, pad_list(pad)
        self.retry_below = retry_below
        self.calibration = detector.calibration

    @staticmethod
    def _padded(image: np.ndarray, pad: float) -> tuple[np.ndarray, int]:
        b = int(round(pad * max(image.shape[:2])))
        if b == 0:
            return image, 0
        return cv2.copyMakeBorder(image, b, b, b, b, cv2.BORDER_REPLICATE), b

    def raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores, _ = self._search(image, False)
        return boxes, scores

    def raw_points(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._search(image, True)

    def _search(self, image: np.ndarray, points: bool):
        best, top = None, -np.inf
        for pad in self.pads:
            padded, b = self._padded(image, pad)
            told = {"border": b} if getattr(self.detector, "takes_border", False) else {}
            if points:
                boxes, scores, pts = self.detector.raw_points(padded, **told)
                pts = pts - b
            else:
                (boxes, scores), pts = self.detector.raw(padded, **told), None
            found = float(np.max(scores)) if len(boxes) else -np.inf
            if best is None or found > top:
                best, top = (boxes - b, scores, pts), found
            if len(best[0]) and top >= self.retry_below:
                break
        return best

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.raw(image)
        return self.calibration.apply(boxes), scores


class FromPoints:
    """Crops placed from a detector's five points (MTCNN's O-Net) through the landmark
    model's own box rule (boxes.py), instead of from its calibrated box: the same rule that
    made the training boxes of faces without one."""

    def __init__(self, detector, rule):
        self.detector, self.rule = detector, rule
        self.calibration = Calibration()

    def raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from tcdcn.boxes import boxes_from_five_points
        _, scores, points = self.detector.raw_points(image)
        return boxes_from_five_points(points, self.rule), scores

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.raw(image)


class FirstFound:
    """Detectors run in turn on the image; the first that finds a face gives the result
    (boxes come calibrated from each)."""

    def __init__(self, *detectors):
        self.detectors = detectors
        self.calibration = Calibration()

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for detector in self.detectors:
            boxes, scores = detector(image)
            if len(boxes):
                break
        return boxes, scores


# Turns (degrees clockwise) tried where the upright image has no face scoring at least
# TURN_RETRY_BELOW (sideways faces are often found upright, with a low score): quarter turns
# for upside-down and sideways faces (a photo whose orientation tag was lost; some of AFLW's
# faces are upside down), and tilts of 30 degrees either way for rolled heads (MTCNN misses
# many faces rolled past 30 degrees; a tilt resamples the image onto a canvas that holds
# it whole). All turns are tried and the one with the most confident face wins if that face
# scores at least TURN_MIN_SCORE and more than the upright image's best (the first turn that
# finds anything is often wrong: a face turned 90 degrees the wrong way is upside down, and
# MTCNN finds false faces in it). Chosen on validation data only:
# - quarter turns (tools/turn_check.py, benchmarks/turn_check.json: 300 faces each of 300-W
#   and of the non-frontal MTFL training faces, turned each way, and 221 face-free images):
#   the right turn's best face scored >= 0.98 for 96% of the faces (1,731 of 1,800), the
#   wrong turns' for 6%, face-free images turned never; retrying below 0.9 left every
#   upright validation face as it was, retrying below 0.98 replaced a few upright faces
#   with worse ones (300-W NME 4.75 -> 5.05%) for better sideways ones;
# - tilts (tools/mtcnn_recall.py, benchmarks/mtcnn_recall.json: MTFL training faces framed
#   like AFLW's test images, upright and rolled within +-60 degrees; 300-W; non-frontal
#   MTFL): rolled faces missed 57 -> 27 of 2,000, the other sets unchanged (300-W 2 -> 1).
#   Tilts of 40 degrees missed fewer rolled faces (18) and no more upright ones, but upright
#   faces that won a 40-degree tilt got worse points: framed faces' FR@10 (misses counted)
#   0.47% at 30 degrees, 0.73% at 40 (NME 3.00 / 3.06%; measured with a scratch script
#   over the same framed faces, the model's default crops), so 30 it is.
# Costs one more detection per turn (with the first border only) on images without a face
# scoring 0.9 (face-free images), none on the others.
DEFAULT_TURNS = (90, 180, 270, 30, 330)
TURN_MIN_SCORE = 0.98
TURN_RETRY_BELOW = 0.9   # the turns are tried where the upright best scores under this
_ROTATE_CODES = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
                 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def turn_list(turns) -> tuple[int, ...]:
    """"auto" / None: DEFAULT_TURNS; () or 0 / False: none; else turns in whole degrees,
    clockwise: quarter turns (pixels moved) or tilts (any other angle: resampled)."""
    if turns is None or (isinstance(turns, str) and turns == "auto"):
        return DEFAULT_TURNS
    if turns is False or (not isinstance(turns, (list, tuple)) and turns == 0):
        return ()
    try:
        values = [float(t) for t in (turns if isinstance(turns, (list, tuple)) else (turns,))]
    except (TypeError, ValueError):
        values = None
    if values is None or any(v != int(v) or int(v) % 360 == 0 for v in values):
        raise ValueError(f"turns must be 'auto' or whole degrees (clockwise, not 0 or 360: "
                         f"90, 180, 270 are quarter turns, others tilts), not {turns!r}")
    return tuple(int(v) % 360 for v in values)


def describe_turns(turns) -> str:
    t = turn_list(turns)
    return ("turned " + ", else ".join(f"{a}" for a in t) + " degrees where upright found none"
            if t else "upright only")


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


def oriented_boxes(detector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Any detector's boxes with their turn (Turned's own; 0 for the others)."""
    if isinstance(detector, Turned):
        return detector.oriented(image)
    boxes, scores = detector(image)
    return with_turn(boxes, 0), scores


class Turned:
    """Runs a detector on the image; where it finds no face scoring at least `retry_below`,
    `turned_detector` (default: the same) on the image turned by each of `turns`, and keeps
    the faces of the turn whose best face scores highest, if that beats the upright faces
    (and `min_score`; a turned image's faces below it are dropped); where no turn wins,
    `more_borders` (if given) searches the upright image further. `oriented` gives the boxes
    in the original image with a fifth value, the turn that made their faces upright (0 for
    upright), which inference.LandmarkModel.crops uses to crop the face upright (a tilted
    face's box is its box in the tilted image moved to the face's centre: turned_back,
    upright_box); calling it gives the 4-value boxes."""

    def __init__(self, detector, turns="auto", min_score: float = TURN_MIN_SCORE,
                 turned_detector=None, retry_below: float = TURN_RETRY_BELOW,
                 more_borders=None, last_resort=None, new_image=None):
        self.detector, self.turns, self.min_score = detector, turn_list(turns), min_score
        self.retry_below = retry_below
        self.turned_detector = turned_detector or detector
        # more_borders: the upright search's later borders (detect.Padded), run after the
        # turns, only where no turn won (a sideways face that a wider border shows upright
        # with a fair score must not hide its turn)
        self.more_borders = more_borders
        # last_resort: a detector (upright) run only where everything else found no face
        # at all (the cascade with other thresholds: mtcnn.LAST_RESORT)
        self.last_resort = last_resort
        # new_image: called with no arguments as each image's search begins (make_detector:
        # S-Net forgets the proposals it kept for the last image's searches)
        self.new_image = new_image
        self.calibration = Calibration()   # the wrapped detector's boxes come calibrated

    def oriented(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.new_image is not None:
            self.new_image()
        boxes, scores = self.detector(image)
        upright = with_turn(boxes, 0), scores
        top = float(np.max(scores)) if len(boxes) else -np.inf
        if top >= self.retry_below:
            return upright
        best = (max(self.min_score, top), None)
        for angle in self.turns:
            b, s = self.turned_detector(turn_image(image, angle))
            keep = np.asarray(s) >= self.min_score
            if keep.any() and float(np.max(s)) > best[0]:
                best = (float(np.max(s)), (angle, np.asarray(b)[keep], np.asarray(s)[keep]))
        if best[1] is None:
            if self.more_borders is not None:
                b, s = self.more_borders(image)
                if len(b) and float(np.max(s)) > top:
                    return with_turn(b, 0), s
            if not len(boxes) and self.last_resort is not None:
                b, s = self.last_resort(image)
                return with_turn(b, 0), s
            return upright
        angle, b, s = best[1]
        return with_turn(turned_back(b, angle, image.shape), angle), s

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.oriented(image)
        return boxes[:, :4], scores
