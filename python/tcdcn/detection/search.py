"""Searching harder: borders around the image, turns of it, and the detectors that run in
turn (the first that finds a face wins), composed around a detector by factory.py.

Every detector here is called as detector(image, search) with the call's base.Search."""
from __future__ import annotations

import cv2
import numpy as np

from tcdcn.boxes import boxes_from_five_points
from tcdcn.detection.base import Calibration, Search
from tcdcn.geometry import turn_image, turned_back, with_turn

# The borders detection adds by default, as fractions of the image's longer side: first 0.1
# (faces that touch the edge of a tight crop, such as AFLW's 150x150 images, are found, at
# about 20% more detection time), then, only where no face scored PAD_RETRY_BELOW, 0.25, then
# 0.5 (faces larger than the image); the most confident search wins. Chosen on validation
# faces framed like AFLW's test images (data.detector_sets.framed_faces; tools/mtcnn_recall.py,
# benchmarks/mtcnn_recall.json): 19 -> 8 of 4,000 missed against (0.1, 0.25) tried only
# where nothing was found; 300-W AFW + HELEN train 3 -> 2 of 1,207.
DEFAULT_PADS = (0.1, 0.25, 0.5)


PAD_RETRY_BELOW = 0.9


MAX_PAD = 1.0   # a border of the longer side on each side: 3x the image's side at most


def pad_list(pad) -> tuple[float, ...]:
    """A pad (a fraction, or "auto" / None for DEFAULT_PADS) or a sequence of pads."""
    if pad is None or pad == "auto":
        return DEFAULT_PADS
    try:
        pads = tuple(float(p) for p in (pad if isinstance(pad, (list, tuple)) else (pad,)))
    except (TypeError, ValueError):
        pads = ()
    if not pads or not all(0 <= p <= MAX_PAD for p in pads):   # NaN fails too
        raise ValueError(f"pad must be 'auto', a fraction from 0 to {MAX_PAD:g} of the longer "
                         f"side or a list of them, not {pad!r}")
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

    def describe(self) -> dict:
        return {"type": "borders", "pads": list(self.pads), "retry_below": self.retry_below,
                "detector": self.detector.describe()}

    @staticmethod
    def _padded(image: np.ndarray, pad: float) -> tuple[np.ndarray, int]:
        b = int(round(pad * max(image.shape[:2])))
        if b == 0:
            return image, 0
        return cv2.copyMakeBorder(image, b, b, b, b, cv2.BORDER_REPLICATE), b

    def raw(self, image: np.ndarray, search: Search | None = None) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores, _ = self._search(image, False, search or Search())
        return boxes, scores

    def raw_points(self, image: np.ndarray, search: Search | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._search(image, True, search or Search())

    def _search(self, image: np.ndarray, points: bool, search: Search):
        best, top = None, -np.inf
        for pad in self.pads:
            padded, b = self._padded(image, pad)
            told = {"border": b} if getattr(self.detector, "takes_border", False) else {}
            if points:
                boxes, scores, pts = self.detector.raw_points(padded, search=search, **told)
                pts = pts - b
            else:
                (boxes, scores), pts = self.detector.raw(padded, search=search, **told), None
            found = float(np.max(scores)) if len(boxes) else -np.inf
            if best is None or found > top:
                best, top = (boxes - b, scores, pts), found
            if len(best[0]) and top >= self.retry_below:
                break
        return best

    def __call__(self, image: np.ndarray, search: Search | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.raw(image, search)
        return self.calibration.apply(boxes), scores


class FromPoints:
    """Crops placed from a detector's five points (MTCNN's O-Net) through the landmark
    model's own box rule (boxes.py), instead of from its calibrated box: the same rule that
    made the training boxes of faces without one."""

    def __init__(self, detector, rule):
        self.detector, self.rule = detector, rule
        self.calibration = Calibration()

    def describe(self) -> dict:
        return {"type": "from_points", "detector": self.detector.describe()}

    def raw(self, image: np.ndarray, search: Search | None = None) -> tuple[np.ndarray, np.ndarray]:
        _, scores, points = self.detector.raw_points(image, search=search or Search())
        return boxes_from_five_points(points, self.rule), scores

    def __call__(self, image: np.ndarray, search: Search | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        return self.raw(image, search)


class FirstFound:
    """Detectors run in turn on the image; the first that finds a face gives the result
    (boxes come calibrated from each)."""

    def __init__(self, *detectors):
        self.detectors = detectors
        self.calibration = Calibration()

    def describe(self) -> dict:
        return {"type": "first_found", "detectors": [d.describe() for d in self.detectors]}

    def __call__(self, image: np.ndarray, search: Search | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        search = search or Search()
        for detector in self.detectors:
            boxes, scores = detector(image, search)
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


def oriented_boxes(detector, image: np.ndarray,
                   search: Search | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Any detector's boxes with their turn (Turned's own; 0 for the others)."""
    if hasattr(detector, "oriented"):
        return detector.oriented(image, search)
    boxes, scores = detector(image, search or Search())
    return with_turn(boxes, 0), scores


class Turned:
    """Runs a detector on the image; where it finds no face scoring at least `retry_below`,
    `turned_detector` (default: the same) on the image turned by each of `turns`, and keeps
    the faces of the turn whose best face scores highest, if that beats the upright faces
    (and `min_score`; a turned image's faces below it are dropped); where no turn wins,
    `more_borders` (if given) searches the upright image further. `oriented` gives the boxes
    in the original image with a fifth value, the turn that made their faces upright (0 for
    upright), which landmarks.LandmarkModel.crops uses to crop the face upright (a tilted
    face's box is its box in the tilted image moved to the face's centre: turned_back,
    upright_box); calling it gives the 4-value boxes."""

    def __init__(self, detector, turns="auto", min_score: float = TURN_MIN_SCORE,
                 turned_detector=None, retry_below: float = TURN_RETRY_BELOW,
                 more_borders=None, last_resort=None):
        self.detector, self.turns, self.min_score = detector, turn_list(turns), min_score
        self.retry_below = retry_below
        self.turned_detector = turned_detector or detector
        # more_borders: the upright search's later borders (Padded), run after the turns,
        # only where no turn won (a sideways face that a wider border shows upright with a
        # fair score must not hide its turn)
        self.more_borders = more_borders
        # last_resort: a detector (upright) run only where everything else found no face
        # at all (the cascade with other thresholds: mtcnn.LAST_RESORT)
        self.last_resort = last_resort
        self.calibration = Calibration()   # the wrapped detector's boxes come calibrated

    def describe(self) -> dict:
        return {"type": "turns", "turns": list(self.turns), "min_score": self.min_score,
                "retry_below": self.retry_below, "upright": self.detector.describe(),
                "turned": self.turned_detector.describe(),
                "more_borders": self.more_borders.describe() if self.more_borders else None,
                "last_resort": self.last_resort.describe() if self.last_resort else None}

    def oriented(self, image: np.ndarray,
                 search: Search | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N x 5: with the turn) and scores; `search`: this call's context (a new
        one where none is given: each image's search starts afresh)."""
        search = search or Search()
        boxes, scores = self.detector(image, search)
        upright = with_turn(boxes, 0), scores
        top = float(np.max(scores)) if len(boxes) else -np.inf
        if top >= self.retry_below:
            return upright
        best = (max(self.min_score, top), None)
        for angle in self.turns:
            b, s = self.turned_detector(turn_image(image, angle), search)
            keep = np.asarray(s) >= self.min_score
            if keep.any() and float(np.max(s)) > best[0]:
                best = (float(np.max(s)), (angle, np.asarray(b)[keep], np.asarray(s)[keep]))
        if best[1] is None:
            if self.more_borders is not None:
                b, s = self.more_borders(image, search)
                if len(b) and float(np.max(s)) > top:
                    return with_turn(b, 0), s
            if not len(boxes) and self.last_resort is not None:
                b, s = self.last_resort(image, search)
                return with_turn(b, 0), s
            return upright
        angle, b, s = best[1]
        return with_turn(turned_back(b, angle, image.shape), angle), s

    def __call__(self, image: np.ndarray, search: Search | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.oriented(image, search)
        return boxes[:, :4], scores
