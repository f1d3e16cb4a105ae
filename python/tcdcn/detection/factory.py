"""The face detector as Detector() runs it, built from one settings object.

A detector is a graph of the pieces in search.py around a cascade (mtcnn.py, with S-Net's
proposals from snet.py, or haar.py). make_detector() builds it from DetectorSettings and the
landmark model's calibration; BuiltDetector.describe() tells what it is made of, so nobody
needs to reach into its parts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tcdcn.boxes import rule_for
from tcdcn.detection import mtcnn
from tcdcn.detection.base import MIN_FACE, Calibration, Search
from tcdcn.detection.haar import HaarDetector
from tcdcn.detection.mtcnn import MTCNNDetector
from tcdcn.detection.search import (
    PAD_RETRY_BELOW,
    TURN_RETRY_BELOW,
    FirstFound,
    FromPoints,
    Padded,
    Turned,
    oriented_boxes,
    pad_list,
    turn_list,
)
from tcdcn.detection.snet import SNetNet
from tcdcn.geometry import is_quarter
from tcdcn.models import SHARING

DETECTORS = ("mtcnn", "haar")
PROPOSALS = ("snet", "pnet")


@dataclass(frozen=True)
class DetectorSettings:
    """Everything that decides how faces are searched for. The defaults are Detector()'s.

    name: "mtcnn" or "haar". proposals (MTCNN only): "snet" runs S-Net instead of P-Net and
    R-Net, and where that found no face at all S-Net once more with O-Net's second look,
    then the classic search (the quarter turns, every border, its last resort); "pnet" the
    classic cascade alone (with every turn). pad: the borders ("auto": search.DEFAULT_PADS;
    0: none). turns (MTCNN only): the turns tried where the upright image has no confident
    face ("auto": search.DEFAULT_TURNS; (): none). crop_from (MTCNN only): "points" places
    crops from the detector's five points through the model's box rule, "box" from its
    calibrated box, None as model.json says (else "box"). last_resort: the cascade
    thresholds searched with where nothing at all was found ("auto": mtcnn.LAST_RESORT;
    None: off). fallback (S-Net only): False for S-Net's search alone. fallback_min_face
    (S-Net only): the smallest face, in min_face units, of the classic search S-Net falls
    back to (None: mtcnn.FALLBACK_MIN_FACE; 1: every size). lazy, nms, max_regression,
    max_candidates (None: mtcnn's defaults), pad_retry_below and turn_retry_below (the best
    upright score under which the turns are tried) tune the cascade, the border search and
    the turns (tools/mtcnn_recall.py and tools/turn_check.py compare them). sharing: how threads share the
    nets (models.SHARING)."""

    name: str = "mtcnn"
    proposals: str = "snet"
    min_face: int = MIN_FACE
    pad: object = "auto"
    turns: object = "auto"
    crop_from: str | None = None
    last_resort: object = "auto"
    fallback: bool = True
    fallback_min_face: float | None = None
    lazy: tuple | None = None
    nms: tuple | None = None
    max_regression: float | None = None
    max_candidates: int | None = None
    pad_retry_below: float = PAD_RETRY_BELOW
    turn_retry_below: float = TURN_RETRY_BELOW
    mtcnn_dir: Path | None = None
    snet_dir: Path | None = None
    sharing: str = "copies"

    def __post_init__(self):
        if self.name not in DETECTORS:
            raise ValueError(f"detector must be 'mtcnn' or 'haar', not {self.name!r}")
        if self.proposals not in PROPOSALS:
            raise ValueError(f"proposals must be 'snet' or 'pnet', not {self.proposals!r}")
        if self.crop_from not in (None, "box", "points"):
            raise ValueError(f"crop_from must be 'box' or 'points', not {self.crop_from!r}")
        if self.sharing not in SHARING:
            raise ValueError(f"sharing must be one of {SHARING}, not {self.sharing!r}")
        pad_list(self.pad)     # raise early on bad values
        turns = turn_list(self.turns)
        if self.name == "haar":
            if self.crop_from == "points":
                raise ValueError("the Haar detector gives no points: use crop_from='box'")
            # the turns' score thresholds are MTCNN's probabilities
            if self.turns not in (None, "auto") and turns:
                raise ValueError("turns need MTCNN's face scores: use detector='mtcnn' or turns=()")

    def with_changes(self, **changes) -> "DetectorSettings":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


def crop_placement(meta: dict, detector: str) -> str:
    """Where this model's crops come from with a detector: model.json's detector_crop
    ("box": the calibrated box, "points": the detector's five points), else "box"."""
    return meta.get("detector_crop", {}).get(detector, "box")


class BuiltDetector:
    """A detector built by make_detector: call it on an image for calibrated boxes and
    scores, or oriented() for boxes with their turn. Holds configuration and loaded nets
    only; each call makes its own base.Search, so threads can share one."""

    def __init__(self, settings: DetectorSettings, root, crop_from: str,
                 cascade: MTCNNDetector | HaarDetector):
        self.settings, self.root, self.crop_from = settings, root, crop_from
        # the cascade itself, uncalibrated: tracking checks its crops with O-Net's scores
        self.cascade = cascade
        self.calibration = Calibration()   # the boxes come calibrated from the graph

    def describe(self) -> dict:
        """What this detector is made of: its settings and the graph of its searches."""
        return {"settings": self.settings.as_dict(), "crop_from": self.crop_from,
                "graph": self.root.describe()}

    def oriented(self, image: np.ndarray,
                 search: Search | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N x 5, the fifth value the turn that makes each face upright) and scores."""
        return oriented_boxes(self.root, image, search or Search())

    def __call__(self, image: np.ndarray, search: Search | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.oriented(image, search)
        return boxes[:, :4], scores


def make_detector(model, settings: DetectorSettings | None = None,
                  backend: str | None = None) -> BuiltDetector:
    """The detector `settings` describe (default: Detector()'s), with the landmark model's
    stored calibration for it. S-Net runs on `backend` (default: the landmark model's:
    this project's Caffe where it is built, its direct convolution being faster on S-Net's
    strided and dilated layers than OpenCV's); MTCNN's nets stay on OpenCV, faster there
    (tools/bench_inference.py)."""
    s = settings or DetectorSettings()
    calib = Calibration(**model.meta.get("detector_calibration", {}).get(s.name, {}))
    crop_from = s.crop_from or crop_placement(model.meta, s.name)
    if s.name == "haar" and crop_from == "points":
        raise ValueError("the Haar detector gives no points: use crop_from='box'")
    pads = pad_list(s.pad)

    def chain(pads, cascade):
        # Haar's scores are level weights, not probabilities: frontal detections (>= 100)
        # end the border search as a face scoring PAD_RETRY_BELOW does, profile-only ones
        # (small weights) let the wider borders try
        detector = Padded(cascade, pads, s.pad_retry_below) if pad_list(pads) != (0.0,) \
            else cascade
        if crop_from == "points":
            detector = FromPoints(detector, rule_for(model.scheme.count))
        return detector

    if s.name == "haar":
        base = HaarDetector(calib, min_size=s.min_face, sharing=s.sharing)
        return BuiltDetector(s, chain(s.pad, base), crop_from, base)

    tuning = {k: v for k, v in dict(lazy=s.lazy, nms_thresholds=s.nms,
                                    max_regression=s.max_regression,
                                    max_candidates=s.max_candidates).items() if v is not None}
    # MTCNN's nets run in OpenCV dnn (faster there than in our Caffe), in onnxruntime where
    # the model does (backend "onnx": every net in onnxruntime)
    base = MTCNNDetector(s.mtcnn_dir, calib, min_size=s.min_face, sharing=s.sharing,
                         backend="onnx" if model.backend == "onnx" else "opencv", **tuning)
    last_resort = mtcnn.LAST_RESORT if s.last_resort == "auto" else s.last_resort

    def last_for(cascade):   # where nothing at all was found: the same nets, other bars
        if last_resort is None:
            return None
        return chain(pads, cascade.variant(thresholds=tuple(float(t) for t in last_resort)))

    # the upright image and the turned ones get the first border (each turn costs one
    # detection on face-free images, not one per border); the later borders are searched,
    # upright, where no turn won; the last resort where nothing at all was found
    if s.proposals == "pnet":
        root = Turned(chain(pads[:1], base), s.turns, retry_below=s.turn_retry_below,
                      more_borders=chain(pads[1:], base) if len(pads) > 1 else None,
                      last_resort=last_for(base))
        return BuiltDetector(s, root, crop_from, base)
    snet = SNetNet(s.snet_dir, backend=backend or model.backend, sharing=s.sharing)
    fast = base.variant(first_stage=snet)   # the same O-Net, S-Net's proposals
    turned = fast.variant(recheck_below=1.0)   # the turns compete on their scores: O-Net looks twice
    # where S-Net's whole search (first border, turns, later borders) found no face at
    # all: S-Net once more, upright with every border, O-Net looking twice at what it
    # rejects (mtcnn.RELOOK_ABOVE); where that finds nothing either, the classic search with
    # the quarter turns only (not the tilts), the later borders and its last resort.
    # Chosen on validation faces. Scratch runs of the second search with the classic search
    # upright only, against the previous default (the classic search with every turn, no
    # second search; faces missed / images that needed the classic search): 2,000 rolled
    # +-60 degrees 12 / 17 -> 12 / 13; 1,538 non-frontal MTFL framed like AFLW 3 / 9 -> 1 / 3;
    # 1,000 upright framed 0 / 3 -> 0 / 2; 300-W 0 / 3 -> 0 / 0. The classic tilts found no
    # rolled face more and are the dearest searches on face-free images, but without the
    # classic quarter turns too (tools/turn_check.py) 300-W faces turned 90 / 180 / 270
    # degrees were missed 9 / 5 / 15 times of 300 instead of 8 / 3 / 14, non-frontal MTFL
    # 14 / 7 / 12 instead of 12 / 5 / 8, so they stay (then 8 / 3 / 14 and 12 / 5 / 9;
    # tools/mtcnn_recall.py: 0 / 1 / 0 / 11 of 300-W / non-frontal / framed / rolled
    # missed, 0 / 1 / 0 / 12 before). The second look in every search (not only here)
    # would end the search on a sideways face seen upright before the turn that shows it
    # upright
    fallback = None
    if s.fallback:
        relook = fast.variant(relook_above=mtcnn.RELOOK_ABOVE)
        # the classic search after S-Net's: no pyramid levels for faces under
        # mtcnn.FALLBACK_MIN_FACE x min_face (S-Net searched those sizes)
        large = base.variant(min_face_factor=(mtcnn.FALLBACK_MIN_FACE
                                              if s.fallback_min_face is None
                                              else float(s.fallback_min_face)))
        fallback = FirstFound(
            chain(pads, relook),
            Turned(chain(pads[:1], large), tuple(t for t in turn_list(s.turns) if is_quarter(t)),
                   more_borders=chain(pads[1:], large) if len(pads) > 1 else None,
                   last_resort=last_for(large)))
    root = Turned(chain(pads[:1], fast), s.turns, turned_detector=chain(pads[:1], turned),
                  retry_below=s.turn_retry_below,
                  more_borders=chain(pads[1:], fast) if len(pads) > 1 else None,
                  last_resort=fallback)
    return BuiltDetector(s, root, crop_from, base)
