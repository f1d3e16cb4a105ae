"""S-Net: a single-shot first stage for the default face detector.

MTCNN's first two stages cost most of its time on small photos: P-Net over a pyramid of
factor 0.709 (8 levels for a 150 px image at a 20 px minimum face) and R-Net on about 30 of
its boxes. S-Net replaces both: one small fully convolutional net (grey input, three
stride-2 convolutions and two dilated ones, receptive field 127 px) that, at each cell of a
stride-8 grid, scores "a face of 16-48 px is centred here" and regresses its square box
(and five points, learnt but not used: O-Net gives them). A pyramid of factor 1/3 covers all
sizes: 2 levels for a 150 px image. Its few proposals go to MTCNN's own O-Net, which checks
them and gives boxes and points exactly as before, so crop placement and calibration are
unchanged. Where S-Net's whole search finds no face at all, the classic cascade searches
as before (factory.make_detector).

S-Net learns from MTCNN itself (tools/snet_labels.py: every face the full cascade finds in
the MTFL training images that the detector validation sets do not use; tools/train_snet.py).
Targets: the cell nearest a face's centre is positive when the face's side is in
FACE_RANGE, the 8 cells around it neither way, faces just outside the range and doubtful
teacher faces neither way, everything else background.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tcdcn.detection.base import PIXEL_MEAN, PIXEL_SCALE, Search, nms
from tcdcn.models import bundled, load_net, shared

STRIDE = 8            # one output cell per 8x8 input pixels; cell j's centre is pixel 8j


FACE_RANGE = (16.0, 48.0)   # face sides (px, in the net's input) a pyramid level answers for


LEVEL_STEP = FACE_RANGE[1] / FACE_RANGE[0]   # the pyramid's scale step (3)


SIDE_REF = 28.0       # log-side targets are relative to this


CHANNELS = (8, 16, 32, 32)


N_REG = 13            # dx, dy, log side, five points (x, y) relative to the face centre / side


MEAN, SCALE = PIXEL_MEAN, PIXEL_SCALE   # grey input, as MTCNN's: (pixel - 127.5) / 128


# training inputs shown at a scale k under 1 / PRESHRINK are first shrunk with area
# averaging to PRESHRINK * k, then warped bilinearly; the pyramid's levels follow the rule
PRESHRINK = 1.25


def _conv(name: str, bottom: str, n: int, stride: int = 1, dilation: int = 1,
          relu: bool = True, kernel: int = 3) -> str:
    pad = dilation * (kernel // 2)
    text = (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
            f'  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}\n'
            f'  convolution_param {{ num_output: {n} kernel_size: {kernel} stride: {stride} '
            f'pad: {pad} dilation: {dilation}\n'
            f'    weight_filler {{ type: "msra" }} bias_filler {{ type: "constant" value: 0 }} }} }}\n')
    if relu:
        text += f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{name}" top: "{name}" }}\n'
    return text


def net_text(train: bool, batch: int = 1, size: tuple[int, int] = (96, 96),
             channels=CHANNELS) -> str:
    """The S-Net prototxt: three stride-2 convolutions, then two dilated ones (receptive
    field 127 px at stride 8), then a 1x1 head with a face score and 13 regression values
    per cell; `channels`: the widths of conv1, conv2, conv3 and conv4-6. train=True adds the
    losses on Input blobs label / target / mask."""
    c1, c2, c3, c4 = channels
    h, w = size
    text = f'name: "snet"\n'
    text += (f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ '
             f'dim: {batch} dim: 1 dim: {h} dim: {w} }} }} }}\n')
    text += _conv("conv1", "data", c1, stride=2)
    text += _conv("conv2", "conv1", c2, stride=2)
    text += _conv("conv3", "conv2", c3, stride=2)
    text += _conv("conv4", "conv3", c4)
    text += _conv("conv5", "conv4", c4, dilation=2)
    text += _conv("conv6", "conv5", c4, dilation=4)
    text += _conv("score", "conv6", 1, relu=False, kernel=1)
    text += _conv("reg", "conv6", N_REG, relu=False, kernel=1)
    if not train:
        text += 'layer { name: "prob" type: "Sigmoid" bottom: "score" top: "prob" }\n'
        return text
    gh, gw = grid_size(h), grid_size(w)
    for name, ch in (("label", 1), ("target", N_REG), ("mask", N_REG)):
        text += (f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ '
                 f'dim: {batch} dim: {ch} dim: {gh} dim: {gw} }} }} }}\n')
    text += ('layer { name: "score_loss" type: "SigmoidCrossEntropyLoss" bottom: "score" '
             'bottom: "label" top: "score_loss" loss_weight: 1\n'
             '  loss_param { ignore_label: -1 normalization: BATCH_SIZE } }\n'
             'layer { name: "reg_masked" type: "Eltwise" bottom: "reg" bottom: "mask" '
             'top: "reg_masked" eltwise_param { operation: PROD } }\n'
             'layer { name: "reg_loss" type: "EuclideanLoss" bottom: "reg_masked" '
             'bottom: "target" top: "reg_loss" loss_weight: 1 }\n')
    return text


def grid_size(n: int) -> int:
    """Output cells along a side of n input pixels (three k3 s2 p1 convolutions)."""
    for _ in range(3):
        n = (n - 1) // 2 + 1
    return n


def encode(faces: np.ndarray, points: np.ndarray, ignore: np.ndarray, shape: tuple[int, int],
           face_range=FACE_RANGE, band: float = 1.33):
    """Training targets for one input of `shape` (h, w). faces: N x 3 (centre x, y, side),
    points: N x 5 x 2, ignore: M x 3 (centre x, y, side) of regions that must not count
    either way. A face whose side is within face_range is positive at the cell nearest its
    centre (its 8 neighbours neither way), and its regression is learnt on those 3x3 cells;
    faces up to `band` x outside the range, and the ignore regions, make their 3x3 cells
    neither way. Returns label (1 x gh x gw: 1, 0, -1 ignore), target and mask (13 x gh x gw)."""
    gh, gw = grid_size(shape[0]), grid_size(shape[1])
    label = np.zeros((1, gh, gw), np.float32)
    target = np.zeros((N_REG, gh, gw), np.float32)
    mask = np.zeros((N_REG, gh, gw), np.float32)
    lo, hi = face_range

    def cell(c):
        return (int(np.clip(np.round(c[1] / STRIDE), 0, gh - 1)),
                int(np.clip(np.round(c[0] / STRIDE), 0, gw - 1)))

    def around(j, i):
        return slice(max(j - 1, 0), min(j + 2, gh)), slice(max(i - 1, 0), min(i + 2, gw))

    for (cx, cy, side) in np.asarray(ignore, np.float64).reshape(-1, 3):
        if -STRIDE <= cx < shape[1] + STRIDE and -STRIDE <= cy < shape[0] + STRIDE:
            label[(0, *around(*cell((cx, cy))))] = -1
    inside = []
    for k, (cx, cy, side) in enumerate(np.asarray(faces, np.float64).reshape(-1, 3)):
        if not (0 <= cx < shape[1] and 0 <= cy < shape[0]):
            continue
        j, i = cell((cx, cy))
        if lo <= side <= hi:
            inside.append((side, k, j, i))
        elif lo / band <= side <= hi * band or side < lo:
            ys, xs = around(j, i)
            label[0, ys, xs] = np.where(label[0, ys, xs] == 1, 1, -1)
    for side, k, j, i in sorted(inside):   # smaller faces first: larger ones win overlaps
        cx, cy, _ = faces[k]
        ys, xs = around(j, i)
        label[0, ys, xs] = np.where(label[0, ys, xs] == 1, 1, -1)
        label[0, j, i] = 1
        gy, gx = np.mgrid[ys, xs]
        rel = (np.asarray(points[k], np.float64) - (cx, cy)) / side
        target[0, ys, xs] = (cx - STRIDE * gx) / STRIDE
        target[1, ys, xs] = (cy - STRIDE * gy) / STRIDE
        target[2, ys, xs] = np.log(side / SIDE_REF)
        target[3:, ys, xs] = rel.ravel()[:, None, None]
        mask[:, ys, xs] = 1
    return label, target * mask, mask


def decode(prob: np.ndarray, reg: np.ndarray, threshold: float, points: bool = True):
    """Faces from one level's outputs (prob: gh x gw, reg: 13 x gh x gw), in the level's
    input pixels: square boxes (left, top, right, bottom), scores and points (N x 5 x 2;
    None unless `points`)."""
    ys, xs = np.nonzero(prob >= threshold)
    if not len(ys):
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)) if points else None
    r = reg[:, ys, xs].astype(np.float64)
    cx = STRIDE * (xs + r[0])
    cy = STRIDE * (ys + r[1])
    half = SIDE_REF / 2 * np.exp(np.clip(r[2], -3, 3))
    boxes = np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)
    pts = None
    if points:
        pts = r[3:].T.reshape(-1, 5, 2) * (2 * half)[:, None, None] + np.stack([cx, cy], 1)[:, None]
    return boxes, prob[ys, xs].astype(np.float64), pts


# Chosen on held-out validation faces (the framed and rolled sets of tools/mtcnn_recall.py,
# 1,000 each, S-Net alone, no classic fallback): rolled faces missed 7 / 13 / 20 / 27 with a
# threshold of 0.3 / 0.5 / 0.7 / 0.9, framed ones 3 throughout, O-Net crops 1.0-1.1 per
# framed image either way. A cap on the proposals saves nothing there (at most 1: 13 rolled
# faces missed, 3 or 6: 10, with an earlier S-Net) and loses faces in group photos, so there
# is none. Small levels on a 48 px border instead of 64: twice the O-Net crops and 12 rolled
# faces missed instead of 10 (the same earlier S-Net).
PROPOSAL_THRESHOLD = 0.3   # S-Net score a cell needs to become a proposal


MAX_PROPOSALS = 0          # at most this many proposals (best first) go to O-Net; 0: all


PROPOSAL_NMS = 0.5


MIN_INPUT = 64             # pyramid levels smaller than this are shown on a replicated border


class SNetNet:
    """S-Net through stock OpenCV dnn or this project's pycaffe: proposals(grey, min_size)
    gives its proposals over a short pyramid (one level per factor LEVEL_STEP of face size).
    Holds the loaded nets only (one per thread, or one behind a lock: models.shared), so
    threads can share it."""

    def __init__(self, folder: str | Path | None = None, backend: str = "opencv",
                 sharing: str = "copies"):
        folder = Path(folder) if folder is not None else bundled("snet")
        deploy, weights = folder / "snet.prototxt", folder / "snet.caffemodel"
        for f in (deploy, weights):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: S-Net model file missing (tools/train_snet.py "
                                        "writes it)")
        self.backend = backend

        def load():
            return load_net(folder, "snet", backend, "S-Net model")
        # two copies: one for the large levels, one for the batch of small ones, so that
        # neither reallocates its blobs for the other's shape on every image
        self.nets = shared(lambda: (load(), load()), sharing)

    def describe(self) -> dict:
        return {"type": "snet", "backend": self.backend}

    def proposals(self, grey: np.ndarray, min_size: float, threshold: float | None = None,
                  max_proposals: int | None = None, search: Search | None = None) -> np.ndarray:
        """Square boxes (N x 5: left, top, right, bottom, score) in image pixels, best first
        (threshold, max_proposals: PROPOSAL_THRESHOLD and MAX_PROPOSALS unless given)."""
        threshold = PROPOSAL_THRESHOLD if threshold is None else threshold
        max_proposals = MAX_PROPOSALS if max_proposals is None else max_proposals
        # the searches of one image with other borders or second looks (search.Padded,
        # factory's fallback) show S-Net the same pixels: the search keeps the last image's
        # proposals and gives them again
        key = (float(min_size), threshold, max_proposals, MIN_INPUT, PROPOSAL_NMS, FACE_RANGE)
        search = search or Search()
        return search.memo("snet", key, grey, lambda: self._proposals(
            grey, min_size, threshold, max_proposals)).copy()

    def _proposals(self, grey, min_size, threshold, max_proposals) -> np.ndarray:
        h, w = grey.shape[:2]
        scale = FACE_RANGE[0] / float(min_size)
        levels = []   # (scale x, scale y, image, its offset in the padded input)
        while min(h, w) * scale >= FACE_RANGE[0]:
            hs, ws = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
            # resampled as training inputs of that scale were (Sampler.sample): bilinear down
            # to 1 / PRESHRINK, area averaging below (the first level of a 20 px minimum
            # face, 0.8, is bilinear: a third of INTER_AREA's time)
            im = grey if (hs, ws) == (h, w) else cv2.resize(
                grey, (ws, hs),
                interpolation=cv2.INTER_AREA if PRESHRINK * scale < 1 else cv2.INTER_LINEAR)
            # a level smaller than MIN_INPUT is shown on a replicated border (as training
            # inputs show the edges of their images); all such levels run as one batch
            py, px = max(MIN_INPUT - hs, 0), max(MIN_INPUT - ws, 0)   # read at call time
            if py or px:
                im = cv2.copyMakeBorder(im, py // 2, py - py // 2, px // 2, px - px // 2,
                                        cv2.BORDER_REPLICATE)
            levels.append((ws / w, hs / h, im, (px // 2, py // 2)))
            scale /= LEVEL_STEP
        found = []
        groups = [[lv] for lv in levels if lv[2].shape != (MIN_INPUT, MIN_INPUT)]
        small = [lv for lv in levels if lv[2].shape == (MIN_INPUT, MIN_INPUT)]
        work = [(0, g) for g in groups] + ([(1, small)] if small else [])
        for which, group in work:
            blob = ((np.stack([lv[2] for lv in group]).astype(np.float32) - MEAN) * SCALE)[:, None]
            with self.nets.use() as nets:
                nets[which].setInput(blob)
                prob, reg = nets[which].forward(["prob", "reg"])
            for k, (sx, sy, _, (ox, oy)) in enumerate(group):
                boxes, scores, _ = decode(prob[k, 0], reg[k], threshold, points=False)
                if len(boxes):
                    boxes = (boxes - np.array([ox, oy, ox, oy])) / np.array([sx, sy, sx, sy])
                    found.append(np.concatenate([boxes, scores[:, None]], axis=1))
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        keep = nms(boxes[:, :4], boxes[:, 4], PROPOSAL_NMS)
        if max_proposals > 0:
            keep = keep[:max_proposals]
        return boxes[keep]
