"""Video: follow faces from frame to frame with the landmark model instead of detecting
every frame.

Each tracked face's next crop is the box derived from its landmarks in the previous frame
(the model's own box rule, boxes.py), so between detections a frame costs one landmark
pass per face, plus every few frames an O-Net check (MTCNN's last stage on the same box:
the face evidence).
The detector runs again
  - every `redetect_every` frames (a new face may have entered),
  - when a tracked face's O-Net face probability drops below `min_face_score` (it left,
    or the track slid off it; checked every `check_every` frames),
  - when a tracked face's quality (Face.quality, from a model with an uncertainty head)
    drops below `min_quality` (its points are predicted to be wrong; checked every frame at
    no extra cost: the landmark pass gives it),
  - when no face is tracked.
After a detection the tracks are the detections (their landmarks from the detector path,
refinement included). Faces keep a track id; landmarks can be smoothed with the one-euro
filter (smoothing.py), keyed by that id.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tcdcn.boxes import box_from_landmarks
from tcdcn.detection.base import iou
from tcdcn.detection.mtcnn import MTCNNDetector
from tcdcn.face import Face
from tcdcn.geometry import apply_matrix, turn_image, turn_matrix
from tcdcn.image import load_image, to_grey
from tcdcn.landmarks import box_for_points
from tcdcn.video.smoothing import OneEuro

# The quality below which a followed face is detected again (tools/bench_tracking.py on
# validation faces that leave the frame or turn in it: frames with wrong points 15.3% with
# the O-Net check every 5th frame, 4.5% with quality 0.3, 4.4% with 0.5 at half again as
# many detections; benchmarks/bench_tracking.json).
DEFAULT_MIN_QUALITY = 0.3


@dataclass
class TrackStats:
    frames: int = 0
    detections: int = 0           # frames on which the detector ran
    lost: int = 0                 # tracks dropped by the face check
    reasons: dict = field(default_factory=lambda: {"interval": 0, "lost": 0, "empty": 0,
                                                   "quality": 0})


class Tracker:
    """Call it on consecutive frames (BGR, BGRA or grey); returns the frame's faces, each
    with a `track_id` attribute. `detector` is an api.Detector (MTCNN gives the face
    check; with Haar the check is skipped and only the interval and empty rules apply).
    `min_quality` (0..1; None: off) re-detects when a followed face's Face.quality falls
    below it; "auto" (the default): DEFAULT_MIN_QUALITY where the model has an uncertainty
    head, else off. `face_check=False` turns the O-Net check off."""

    def __init__(self, detector, redetect_every: int = 15, min_face_score: float = 0.5,
                 smooth_fps: float | None = None, check_every: int = 5,
                 min_quality: float | str | None = "auto", face_check: bool = True):
        if redetect_every < 1:
            raise ValueError(f"redetect_every must be at least 1, not {redetect_every}")
        if min_quality == "auto":
            min_quality = (DEFAULT_MIN_QUALITY if getattr(detector.model, "uncertainty", "")
                           else None)
        if min_quality is not None:
            if not 0 <= min_quality <= 1:
                raise ValueError(f"min_quality must be in 0..1, not {min_quality}")
            if not getattr(detector.model, "uncertainty", ""):
                raise ValueError("min_quality needs a model with an uncertainty head "
                                 f"({detector.model.folder} has none)")
        self.min_quality = min_quality
        self.detector = detector
        self.redetect_every = redetect_every
        self.min_face_score = min_face_score
        self.check_every = max(1, check_every)   # the O-Net face check, every k-th frame
        self.tracks: list[Face] = []
        self.ids: list[int] = []
        self._next_id = 0
        self._since_detection = 0
        self.stats = TrackStats()
        # the face check scores boxes in MTCNN's own convention: its calibration maps back
        cascade = detector.detector.cascade
        self.mtcnn = ((cascade.calibration, cascade)
                      if face_check and isinstance(cascade, MTCNNDetector) else None)
        self.smoother = None
        if smooth_fps:
            self._filters: dict[int, OneEuro] = {}
            self._dt = 1.0 / smooth_fps
            self.smoother = OneEuro

    def _detect(self, image, reason: str) -> list[Face]:
        self.stats.detections += 1
        self.stats.reasons[reason] += 1
        faces = self.detector(image)
        self.tracks = faces
        # a detection keeps the id of the track it overlaps most (IoU >= 0.3)
        old = list(zip(self.ids, self._previous_boxes))
        ids = []
        for f in faces:
            best = max(old, key=lambda o: iou(o[1], f.box), default=None)
            if best is not None and iou(best[1], f.box) >= 0.3:
                ids.append(best[0])
                old.remove(best)
            else:
                ids.append(self._next_id)
                self._next_id += 1
        self.ids = ids
        self._since_detection = 0
        return faces

    def __call__(self, frame) -> list[Face]:
        image = load_image(frame)
        self.stats.frames += 1
        self._previous_boxes = [f.box for f in self.tracks]
        self._since_detection += 1
        if not self.tracks:
            faces = self._detect(image, "empty")
        elif self._since_detection >= self.redetect_every:
            faces = self._detect(image, "interval")
        else:
            faces, why = self._follow(image)
            if faces is None:
                faces = self._detect(image, why)
        for f, i in zip(faces, self.ids):
            f.track_id = i
        if self.smoother is not None:
            for f in faces:
                filt = self._filters.setdefault(f.track_id, self.smoother())
                f.landmarks = filt(f.landmarks, self._dt)
            live = {f.track_id for f in faces}
            self._filters = {k: v for k, v in self._filters.items() if k in live}
        return faces

    def _follow(self, image) -> tuple[list[Face] | None, str]:
        """One landmark pass per tracked face on the box of its last landmarks; (None,
        reason) when a face fails the quality or the face check (the caller then
        detects)."""
        model = self.detector.model
        # faces found turned (Face.turn) are followed turned: their crops stay upright
        boxes = np.array([box_for_points(f.landmarks, f.turn, image.shape) for f in self.tracks])
        faces = model.predict(to_grey(image), boxes)
        if self.min_quality is not None:
            low = sum(f.quality < self.min_quality for f in faces)
            if low:
                self.stats.lost += low
                return None, "quality"
        if self.mtcnn is not None and self._since_detection % self.check_every == 0:
            calib, det = self.mtcnn
            scores = np.zeros(len(faces))
            for turn in {f.turn for f in faces}:   # O-Net sees each face upright
                idx = [i for i, f in enumerate(faces) if f.turn == turn]
                t = turn_matrix(turn, image.shape)
                upright = np.array([box_from_landmarks(apply_matrix(t, faces[i].landmarks))
                                    for i in idx])
                scores[idx] = det.face_scores(turn_image(image, turn), calib.invert(upright))
            if np.any(scores < self.min_face_score):
                self.stats.lost += int(np.sum(scores < self.min_face_score))
                return None, "lost"
            for f, s in zip(faces, scores):
                f.score = float(s)
        self.tracks = faces
        return faces, ""
