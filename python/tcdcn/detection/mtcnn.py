"""MTCNN face detection (Zhang et al., IEEE SPL 2016) with the authors' original Caffe models,
run through OpenCV dnn. The models (MIT licence) ship in the package: tcdcn/models/mtcnn
(det1/det2/det3 .prototxt + .caffemodel, from the authors' public repository
kpzhang93/MTCNN_face_detection_alignment, code/codes/MTCNNv1/model); another folder with
the same files can be passed instead.

The models were trained from Matlab (column-major images): every input is fed transposed
(x and y swapped), RGB, scaled as (pixel - 127.5) / 128.

With a first_stage (snet.SNetNet, the default through factory.make_detector),
S-Net's proposals replace P-Net and R-Net and O-Net runs on them as usual.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tcdcn.detection.base import (
    MIN_FACE,
    PIXEL_MEAN,
    PIXEL_SCALE,
    Calibration,
    Search,
    iou_matrix,
    nms,
)
from tcdcn.image import to_grey
from tcdcn.models import (
    BACKENDS,
    bundled,
    default_backend,
    has_caffe_importer,
    load_net,
    shared,
)

THRESHOLDS = (0.6, 0.7, 0.7)


FACTOR = 0.709


# IoU thresholds of the non-maximum suppressions: within a P-Net scale, over all scales,
# after R-Net, after O-Net ("min" mode). The authors' code uses (0.5, 0.7, 0.7, 0.7); 0.5 over
# all scales sends about a fifth fewer boxes to R-Net and missed no more validation faces
# (tools/mtcnn_recall.py, benchmarks/mtcnn_recall.json).
NMS = (0.5, 0.5, 0.7, 0.7)


# Lazy R-Net / O-Net: each runs first on the boxes that survive a stricter NMS at this IoU,
# then on the other boxes only where they overlap (IoU above it) a first-pass box the net
# rejected. Where the best box of a cluster is accepted its neighbours are not run at all
# (they would be merged into it by the next NMS); where it is rejected, they get the chance
# the authors' cascade gives them. 1.0: off (every box, as the authors' code). Chosen on
# validation faces: O-Net lazy at 0.3 kept every face (300-W AFW + HELEN train: 6 misses of
# 1,207 either way; the 2,555 non-frontal MTFL training faces: 0 either way) with 2.6x fewer
# O-Net crops; a lazy R-Net (0.5) saved 9% of its crops but missed 1 of those 2,555.
LAZY = (1.0, 0.3)


# O-Net's box regression is a fraction of the box's side; a face it accepts with an offset
# beyond this is dropped: on a crop that is mostly the image's border (a face filling the
# image) O-Net can answer "face, 1.0" with offsets of 2-3 sides, a box far off the image.
MAX_REGRESSION = 1.0


# The cascade's thresholds (P-Net, R-Net, O-Net) for a last resort, run (with every border,
# upright) only where the whole search (borders, turns) found no face at all: R-Net rejects
# some faces that O-Net accepts with near certainty (large faces in tight crops), so R-Net's
# bar is lowered and O-Net's raised. Chosen on validation faces (tools/mtcnn_recall.py,
# benchmarks/mtcnn_recall.json; face-free images: tools/turn_check.py): framed like AFLW's
# test images 7 -> 3 missed of 4,000, rolled ones 27 -> 26 of 2,000, 300-W and non-frontal
# MTFL unchanged; with O-Net at 0.7 it also found false faces on 7 more of the 221
# face-free images (a scratch run), at 0.95 on none.
# None: off.
LAST_RESORT = (0.6, 0.3, 0.95)


# At most this many P-Net boxes (the most confident, after the NMS over scales) go to R-Net;
# 0: all of them (as the authors' code).
MAX_CANDIDATES = 0


# S-Net searches inside the border search.Padded adds (O-Net still crops from the bordered
# image): on 1,000 framed validation faces 2.20 ms per image instead of 2.82, S-Net alone
# missing 3 instead of 1 (0 and 0 with the classic fallback); on 1,000 rolled ones 7
# instead of 10 (3 and 2 with the fallback)
SNET_INSIDE_BORDER = True


# With S-Net's proposals, faces O-Net accepts with less than this get a second O-Net look at
# the box it regressed (the better score, box and points count; S-Net's boxes are coarser
# than R-Net's, and O-Net scores a face lower on a worse box): below 0.9, where a face would
# otherwise send the image to the turns and the wider borders; make_detector's turned
# searches look again at every face (1.0), as the turns compete on their scores. 0: off
RECHECK_BELOW = 0.9


# Where S-Net's whole search (borders, turns) found no face at all, it searches once more,
# upright (factory.make_detector), and a proposal O-Net rejects with more than this gets
# one more look at the box O-Net regressed from it (S-Net's box can be off by enough that
# O-Net doubts a face it accepts when shown it better); only where that finds nothing
# either does the classic cascade run, at 10-15 ms a search. Not in the first searches: a
# sideways face seen upright would then end the search before the turns that show it
# upright (tests/test_turns.py). Chosen on validation faces (scratch runs of the default
# detector; misses, and images that needed the classic search): see make_detector
RELOOK_ABOVE = 0.03


# Where the classic search runs as S-Net's fallback (factory.make_detector: only where
# S-Net's whole search found no face at all), its pyramid skips the levels for faces under
# this many times the minimum face size (P-Net's 12 px window at the level's scale): S-Net
# has searched every size by then, and the faces only the classic search finds are large
# ones (faces filling tight crops, heavily occluded or rolled). Those first levels are the
# largest images: the two skipped at 1.5 are three quarters of P-Net's work, and most of
# R-Net's crops. The levels it keeps are the same as before. Chosen on validation faces
# (the 29 of 8,745 in tools/mtcnn_recall.py's sets that reach the fallback: every one at
# least 46 px and 0.29 of its image's shorter side): the same faces, boxes and misses, 44
# -> 31 ms per such image (scratch runs), R-Net crops per rolled face 1.1 -> 0.5
# (benchmarks/mtcnn_recall.json); the 221 face-free images of tools/turn_check.py 145 ->
# 69 ms each, false faces on 5 -> 4 of them (benchmarks/turn_check.json). 1: every level
# (the classic cascade alone, proposals="pnet", searches every size)
FALLBACK_MIN_FACE = 1.5


# The classic search keeps P-Net's candidates and R-Net's outputs for at most this many
# bordered or turned images within one search (base.Search.memo)
KEEP_AT_MOST = 8


ONET_OUTPUTS = ["prob1", "conv6-2", "conv6-3"]   # face probability, box regression, points


def _nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """base.nms on MTCNN's (x1, y1, x2, y2, score, ...) rows."""
    return nms(boxes[:, :4], boxes[:, 4], threshold, mode)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Resampled box contents, transposed for the Matlab-trained nets: N x 3 x W x H.
    `image` is the nets' input (MTCNNDetector._input), or an 8-bit BGR image whose crops are
    converted after resampling (cheaper where only a few crops are needed; the border is
    then 128 instead of 127.5, and values are rounded to whole levels before conversion)."""
    raw = image.dtype == np.uint8
    border = (128,) * 3 if raw else (PIXEL_MEAN,) * 3
    crops = np.empty((len(boxes), size, size, 3), image.dtype)
    for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4]):
        sx = size / max(x2 - x1 + 1, 1e-3)
        sy = size / max(y2 - y1 + 1, 1e-3)
        m = np.array([[sx, 0, -x1 * sx], [0, sy, -y1 * sy]])
        cv2.warpAffine(image, m, (size, size), dst=crops[i], flags=cv2.INTER_AREA,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    if raw:   # all crops converted at once: BGR -> RGB, (v - 127.5) / 128
        crops = (crops[..., ::-1].astype(np.float32) - PIXEL_MEAN) * PIXEL_SCALE
    return np.ascontiguousarray(crops.transpose(0, 3, 2, 1), dtype=np.float32)


def _points(boxes: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """O-Net's five points (N x 5 x 2) from its outputs, which are relative to the box it
    was given (x in the first five values)."""
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    return np.stack([boxes[:, 0:1] + w * pts[:, 0:5], boxes[:, 1:2] + h * pts[:, 5:10]], axis=2)


def _bgr(image: np.ndarray) -> np.ndarray:
    """Grey, BGR or BGRA as BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _load_nets(folder: Path, backend: str) -> list:
    """P-Net, R-Net and O-Net from `folder` (det1-3 .prototxt + .caffemodel)."""
    missing = [f"det{i}.{ext}" for i in (1, 2, 3) for ext in ("prototxt", "caffemodel")
               if not (folder / f"det{i}.{ext}").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: MTCNN model files missing ({', '.join(missing)}); get det1-3 from "
            "the authors' repository kpzhang93/MTCNN_face_detection_alignment "
            "(code/codes/MTCNNv1/model)")
    nets = []
    for i in (1, 2, 3):
        net = load_net(folder, f"det{i}", backend, "MTCNN model")
        # OpenCV 4's convolution fused with the PReLU after it (a slope per channel) is
        # slower than the two layers apart, with the same outputs to the bit: O-Net 0.50
        # instead of 0.58 ms per crop, P-Net and R-Net 10-20% less (tools/bench_inference.py
        # measures it: mtcnn_unfused). OpenCV 5's engine fails to run a net with fusion off.
        if backend == "opencv" and has_caffe_importer():
            net.enableFusion(False)
        nets.append(net)
    return nets


class MTCNNDetector:
    """Three-stage MTCNN cascade; returns calibrated boxes like HaarDetector. backend
    "opencv" (stock OpenCV dnn) or "caffe" (this project's pycaffe); "auto" as the landmark
    model chooses (models.default_backend). With a `first_stage` (snet.SNetNet), its
    proposals replace P-Net and R-Net. Holds configuration and the loaded nets only (one
    copy per thread, or one behind a lock: models.shared); what a search computes lives in
    its base.Search. variant() makes the same cascade with other settings, sharing the nets."""

    def __init__(self, folder: str | Path | None = None, calibration: Calibration | None = None,
                 min_size: int = MIN_FACE, thresholds=THRESHOLDS, backend: str = "opencv",
                 nms_thresholds=None, lazy=None, max_regression: float = MAX_REGRESSION,
                 max_candidates: int = MAX_CANDIDATES, min_face_factor: float = 1.0,
                 first_stage=None, recheck_below: float = RECHECK_BELOW,
                 relook_above: float = 1.0, sharing: str = "copies", nets=None):
        folder = Path(folder) if folder is not None else bundled("mtcnn")
        if backend == "auto":
            backend = default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or 'auto', not {backend!r}")
        self.backend = backend
        self.nets = nets if nets is not None else shared(lambda: _load_nets(folder, backend),
                                                         sharing)
        self._settings = dict(folder=folder, calibration=calibration, min_size=min_size,
                              thresholds=thresholds, backend=backend,
                              nms_thresholds=nms_thresholds, lazy=lazy,
                              max_regression=max_regression, max_candidates=max_candidates,
                              min_face_factor=min_face_factor, first_stage=first_stage,
                              recheck_below=recheck_below, relook_above=relook_above,
                              sharing=sharing)
        self.calibration = calibration or Calibration()
        self.min_size = min_size
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nms = tuple(NMS if nms_thresholds is None else nms_thresholds)
        if len(self.nms) != 4 or not all(0 < t <= 1 for t in self.nms):
            raise ValueError(f"nms_thresholds must be four IoUs in (0, 1], not {self.nms}")
        self.max_regression = max_regression
        self.max_candidates = max_candidates
        # first_stage: where set (snet.SNetNet), its proposals replace P-Net and R-Net
        self.first_stage = first_stage
        self.recheck_below = recheck_below
        self.relook_above = relook_above   # 1: off; the factory's last S-Net search: RELOOK_ABOVE
        # P-Net's pyramid skips its levels for faces under this many times min_size
        # (the factory's fallback: FALLBACK_MIN_FACE)
        self.min_face_factor = min_face_factor
        self.lazy = tuple(LAZY if lazy is None else lazy)
        if len(self.lazy) != 2 or not all(0 < t <= 1 for t in self.lazy):
            raise ValueError(f"lazy must be two IoUs in (0, 1] (1: off), not {self.lazy}")

    def variant(self, **changes) -> "MTCNNDetector":
        """The same cascade (the same loaded nets) with some settings changed."""
        return MTCNNDetector(**{**self._settings, **changes}, nets=self.nets)

    def describe(self) -> dict:
        # "nets": which loaded nets it runs (cascades with the same value share them)
        return {"type": "mtcnn", "backend": self.backend, "nets": f"{id(self.nets):x}",
                "first_stage": self.first_stage.describe() if self.first_stage else "pnet",
                "min_size": self.min_size, "thresholds": list(self.thresholds),
                "nms": list(self.nms), "lazy": list(self.lazy),
                "max_regression": self.max_regression, "max_candidates": self.max_candidates,
                "min_face_factor": self.min_face_factor, "recheck_below": self.recheck_below,
                "relook_above": self.relook_above}

    @staticmethod
    def _input(grey_or_bgr: np.ndarray) -> np.ndarray:
        return (cv2.cvtColor(_bgr(grey_or_bgr), cv2.COLOR_BGR2RGB).astype(np.float32)
                - PIXEL_MEAN) * PIXEL_SCALE

    def face_scores(self, grey_or_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """O-Net's face probability for each given (uncalibrated, MTCNN-style) box: the
        face evidence a tracker checks its crops with."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros(0)
        crops = _crops(_bgr(grey_or_bgr), _square(boxes), 48)
        with self.nets.use() as nets:
            nets[2].setInput(crops)
            prob = nets[2].forward("prob1")
        return prob[:, 1].astype(np.float64).ravel()

    def _stage(self, k: int, img: np.ndarray, boxes: np.ndarray, names: list[str],
               search: Search):
        """R-Net (k 1) or O-Net (k 2) on `boxes`, lazily (LAZY): the indices of the boxes it
        ran on and its outputs for them."""
        size = (24, 48)[k - 1]
        strict = self.lazy[k - 1]

        def run(idx):
            crops = _crops(img, boxes[idx], size)
            search.count(size, len(crops))
            with self.nets.use() as nets:
                nets[k].setInput(crops)
                return nets[k].forward(names)

        if strict >= 1:   # not lazy: every box, one batch
            return np.arange(len(boxes)), run(slice(None))
        first = _nms(boxes, strict)
        outs = run(first)
        rejected = first[outs[0][:, 1] <= self.thresholds[k]]
        if len(rejected) and len(first) < len(boxes):
            others = np.ones(len(boxes), bool)
            others[first] = False
            rest = np.nonzero(others)[0]
            near = iou_matrix(boxes[rest, :4], boxes[rejected, :4]).max(axis=1) > strict
            second = rest[near]
            if len(second):
                outs = [np.concatenate([a, b]) for a, b in zip(outs, run(second))]
                first = np.concatenate([first, second])
        return first, outs

    takes_border = True   # search.Padded tells raw / raw_points the border it added

    def raw(self, grey_or_bgr: np.ndarray, border: int = 0,
            search: Search | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated boxes (left, top, right, bottom) and scores, best first."""
        boxes, scores, _ = self.raw_points(grey_or_bgr, border, search)
        return boxes, scores

    def raw_points(self, grey_or_bgr: np.ndarray, border: int = 0,
                   search: Search | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and O-Net's five points (N x 5 x 2: eyes, nose, mouth corners, left
        and right as seen in the image, the MTFL order), best first. `border`: the width of
        a replicated border around the image (search.Padded); S-Net searches inside it (it
        learnt faces cut by the image edge; O-Net still crops from the bordered image)."""
        search = search or Search()
        if self.first_stage is not None:   # S-Net: O-Net's few crops come from the 8-bit image
            b = border if SNET_INSIDE_BORDER else 0
            h, w = grey_or_bgr.shape[:2]
            grey = to_grey(grey_or_bgr[b:h - b, b:w - b])   # the border's pixels unconverted
            boxes = self.first_stage.proposals(grey, self.min_size, search=search)
            boxes[:, :4] += b
            img = _bgr(grey_or_bgr)
        else:
            img = self._input(grey_or_bgr)
            boxes = self._proposals(img, self.min_face_factor * self.min_size, search)
        if len(boxes) == 0:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        return self._output(img, boxes, search)

    def _proposals(self, img: np.ndarray, smallest: float, search: Search) -> np.ndarray:
        """Stages 1 and 2 (P-Net over a pyramid, then R-Net) on the nets' input (_input):
        square boxes (N x 5, the fifth value a score) for O-Net; the pyramid skips its levels
        for faces under `smallest` pixels. Within one search the same image with the same
        P-Net settings gives the kept candidates and R-Net outputs again (the last resort's
        other R-Net / O-Net bars search the same bordered images)."""
        key = (self.min_size, smallest, self.thresholds[0], self.nms[:2],
               self.max_candidates, self.lazy[0],
               self.thresholds[1] if self.lazy[0] < 1 else None)
        boxes, ran, prob, reg = search.memo("mtcnn", key, img,
                                            lambda: self._stages_1_2(img, smallest, search),
                                            keep=KEEP_AT_MOST)
        if len(boxes) == 0:
            return np.zeros((0, 5))
        keep = prob[:, 1] > self.thresholds[1]
        boxes, reg = boxes[ran[keep]], reg[keep]
        if len(boxes) == 0:
            return np.zeros((0, 5))
        boxes[:, 4] = prob[keep, 1]
        pick = _nms(boxes, self.nms[2])
        return _square(_regress(boxes[pick], reg[pick]))

    def _stages_1_2(self, img: np.ndarray, smallest: float, search: Search):
        """P-Net's candidates (square boxes) and R-Net's outputs on them: (boxes, indices R-Net
        ran on, probabilities, regressions). Pyramid levels for faces (P-Net's 12 px window
        at the level's scale) under `smallest` pixels are skipped."""
        h, w = img.shape[:2]
        # stage 1: P-Net over a pyramid
        scales = []
        scale = 12.0 / self.min_size
        minl = min(h, w) * scale
        while minl >= 12:
            scales.append(scale)
            scale *= FACTOR
            minl *= FACTOR
        candidates = []
        for scale in scales:
            # a level for faces smaller than wanted (the tolerance: 12 / (12 / m) can come
            # out just under m, and the first level must stay)
            if 12.0 / scale < smallest * (1 - 1e-9):
                continue
            hs, ws = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            im = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA)
            with self.nets.use() as nets:
                nets[0].setInput(im.transpose(2, 1, 0)[None])
                prob, reg = nets[0].forward(["prob1", "conv4-2"])
            score = prob[0, 1].T                     # rows: y, cols: x
            ys, xs = np.where(score >= self.thresholds[0])
            if len(ys):
                b = np.empty((len(ys), 9))
                b[:, 0:4] = np.trunc(np.stack([2 * xs + 1, 2 * ys + 1, 2 * xs + 12,
                                               2 * ys + 12], axis=1) / scale)
                b[:, 4] = score[ys, xs]
                b[:, 5:9] = reg[0][:, xs, ys].T   # the net's x is our y (transposed input)
                candidates.append(b[_nms(b, self.nms[0])])
        if not candidates:
            return np.zeros((0, 5)), None, None, None
        boxes = np.concatenate(candidates)
        boxes = boxes[_nms(boxes, self.nms[1])]
        if 0 < self.max_candidates < len(boxes):
            boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")[:self.max_candidates]]
        boxes = np.concatenate([_square(_regress(boxes[:, :5], boxes[:, 5:9]))], axis=0)
        # stage 2: R-Net
        ran, (prob, reg) = self._stage(1, img, boxes, ["prob1", "conv5-2"], search)
        return boxes, ran, prob, reg

    def _sane(self, reg: np.ndarray) -> np.ndarray:
        """Whether each O-Net box regression stays within max_regression box sides."""
        return np.abs(reg.reshape(len(reg), -1)).max(axis=1) <= self.max_regression

    def _onet(self, img: np.ndarray, boxes: np.ndarray, search: Search):
        """O-Net on the given (square) boxes: probabilities, regressions, points, and
        whether each regression is sane."""
        crops = _crops(img, boxes, 48)
        search.count(48, len(crops))
        with self.nets.use() as nets:
            nets[2].setInput(crops)
            prob, reg, pts = nets[2].forward(ONET_OUTPUTS)
        return prob, reg, pts, self._sane(reg)

    def _output(self, img: np.ndarray, boxes: np.ndarray, search: Search):
        """Stage 3 (O-Net) on the proposals: raw_points' boxes, scores and points."""
        ran, (prob, reg, pts) = self._stage(2, img, boxes, ONET_OUTPUTS, search)
        boxes = boxes[ran]
        sane = self._sane(reg)
        if self.first_stage is not None and self.relook_above < self.thresholds[2]:
            # rejected S-Net proposals: O-Net looks once more, at the box it regressed
            idx = np.nonzero(sane & (prob[:, 1] <= self.thresholds[2])
                             & (prob[:, 1] > self.relook_above))[0]
            if len(idx):
                again = _square(_regress(boxes[idx], reg[idx]))
                p2, r2, q2, sane[idx] = self._onet(img, again, search)
                boxes[idx], prob[idx], reg[idx], pts[idx] = again, p2, r2, q2
        keep = (prob[:, 1] > self.thresholds[2]) & sane
        boxes, reg, pts = boxes[keep], reg[keep], pts[keep]
        if len(boxes) == 0:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        boxes[:, 4] = prob[keep, 1]
        points = _points(boxes, pts)
        boxes = _regress(boxes, reg)
        if self.first_stage is not None and self.recheck_below > 0:
            # S-Net's boxes are coarser than R-Net's: where O-Net is unsure, it looks again
            # at the box it regressed, and the better look counts
            unsure = np.nonzero(boxes[:, 4] < self.recheck_below)[0]
            if len(unsure):
                again = _square(boxes[unsure])
                prob2, reg2, pts2, sane2 = self._onet(img, again, search)
                better = (prob2[:, 1] > boxes[unsure, 4]) & sane2
                if better.any():
                    idx, again = unsure[better], again[better]
                    again[:, 4] = prob2[better, 1]
                    points[idx] = _points(again, pts2[better])
                    boxes[idx] = _regress(again, reg2[better])
        pick = _nms(boxes, self.nms[3], "min")
        boxes, points = boxes[pick], points[pick]
        order = np.argsort(-boxes[:, 4])
        return boxes[order, :4], boxes[order, 4], points[order]

    def __call__(self, image: np.ndarray, search: Search | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.raw(image, search=search)
        return self.calibration.apply(boxes), scores
