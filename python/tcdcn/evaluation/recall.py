"""How many validation faces a detector, or S-Net's proposals, find."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from tcdcn.data.datasets import read_mtfl
from tcdcn.data.detector_sets import (
    detector_validation_sets,
    framed_faces,
    validation_faces,
)
from tcdcn.detection import mtcnn
from tcdcn.detection.base import MIN_FACE
from tcdcn.detection.factory import DetectorSettings, make_detector
from tcdcn.detection.search import DEFAULT_PADS, DEFAULT_TURNS, PAD_RETRY_BELOW
from tcdcn.detection.snet import SNetNet
from tcdcn.evaluation.evaluate import boxes_for, load_images
from tcdcn.image import to_grey


def covers(box, points) -> bool:
    """Whether a proposal box holds a face's five points and is of a face's size for them
    (its side 1 to 3.5 times the points' extent): a proposal O-Net can work from."""
    points = np.asarray(points, np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = float((hi - lo).max())
    side = float(box[2] - box[0])
    return bool(np.all(lo >= box[:2]) and np.all(hi <= box[2:4]) and span <= side <= 3.5 * span)


def proposal_recall(net: "SNetNet", samples, images: dict, min_size: int = MIN_FACE,
                    pad: float = 0.1) -> dict:
    """S-Net's proposals on validation faces (their images searched with a border, as the
    detector's first search does): the fraction of faces covered by a proposal (covers()),
    and proposals per image."""
    hit, count = 0, 0
    for s in samples:
        grey = to_grey(images[str(s.image)])
        b = int(round(pad * max(grey.shape)))
        grey = cv2.copyMakeBorder(grey, b, b, b, b, cv2.BORDER_REPLICATE)
        boxes = net.proposals(grey, min_size)
        count += len(boxes)
        hit += any(covers(box[:4] - b, s.landmarks) for box in boxes)
    n = max(len(samples), 1)
    return {"faces": len(samples), "covered": hit / n, "proposals_per_image": count / n}

# The rows of tools/mtcnn_recall.py (benchmarks/mtcnn_recall.json): the settings behind
# mtcnn.LAZY, NMS, MAX_REGRESSION, MAX_CANDIDATES, LAST_RESORT, search.DEFAULT_PADS /
# PAD_RETRY_BELOW, the tilts of search.DEFAULT_TURNS and mtcnn.FALLBACK_MIN_FACE, each row a
# change from the default (None: the default itself).
# Each setting: mtcnn.MTCNNDetector's lazy / nms / max_regression, and the borders
# (search.Padded's pads and retry_below; -inf: the next border only where none found a face)
QUARTERS = (90, 180, 270)   # the turns before the tilts
AUTHORS = {"lazy": (1.0, 1.0), "nms": (0.5, 0.7, 0.7, 0.7), "max_regression": float("inf"),
           "pads": (0.1, 0.25), "retry_below": float("-inf"), "turns": QUARTERS,
           "last_resort": None, "proposals": "pnet"}
CLASSIC = {"proposals": "pnet"}   # P-Net + R-Net, the default before S-Net
SETTINGS = {
    "authors' cascade": AUTHORS,
    "lazy O-Net (before)": dict(AUTHORS, lazy=(1.0, 0.3)),
    "+ regression check": dict(AUTHORS, lazy=(1.0, 0.3), max_regression=1.0),
    "+ borders 10/25/50% below 0.9": dict(AUTHORS, lazy=(1.0, 0.3), max_regression=1.0,
                                          pads=(0.1, 0.25, 0.5), retry_below=0.9),
    "+ NMS 0.5 over scales (before)": dict(CLASSIC, turns=QUARTERS, last_resort=None),
    "+ tilts 30 degrees": dict(CLASSIC, last_resort=None),
    "tilts 40 degrees instead": dict(CLASSIC, turns=QUARTERS + (40, 320), last_resort=None),
    "+ last resort (classic cascade)": CLASSIC,
    "+ at most 20 boxes to R-Net": dict(CLASSIC, max_candidates=20),
    "+ lazy R-Net": dict(CLASSIC, lazy=(0.5, 0.3)),
    "S-Net proposals alone (no classic search)": {"fallback": False},
    "fallback classic search at every size (before)": {"fallback_min_face": 1.0},
    "default (S-Net; classic search where it finds none)": None,
}

FRAMED, ROLLED = "MTFL training, framed like AFLW (150x150)", "... and rolled +-60 degrees"


def default_row() -> dict:
    """Detector()'s settings in the rows' terms."""
    return {"lazy": mtcnn.LAZY, "nms": mtcnn.NMS, "max_regression": mtcnn.MAX_REGRESSION,
            "max_candidates": mtcnn.MAX_CANDIDATES, "pads": DEFAULT_PADS,
            "retry_below": PAD_RETRY_BELOW, "turns": DEFAULT_TURNS,
            "last_resort": mtcnn.LAST_RESORT, "proposals": "snet", "fallback": True,
            "fallback_min_face": mtcnn.FALLBACK_MIN_FACE}


def row_settings(row: dict) -> DetectorSettings:
    """A row (default_row()'s keys) as the detector's settings."""
    return DetectorSettings(lazy=tuple(row["lazy"]), nms=tuple(row["nms"]),
                            max_regression=row["max_regression"],
                            max_candidates=row["max_candidates"], pad=row["pads"],
                            pad_retry_below=row["retry_below"], turns=row["turns"],
                            last_resort=row["last_resort"], proposals=row["proposals"],
                            fallback=row["fallback"],
                            fallback_min_face=row["fallback_min_face"])


def recall_sets(root: Path, framed: int, rolled: int) -> dict:
    """The validation sets: 300-W, non-frontal MTFL (detector_sets.detector_validation_sets),
    and `framed` / `rolled` MTFL training faces framed like AFLW's test images (rolled:
    within +-60 degrees), S-Net having learnt from none of them."""
    sets = detector_validation_sets(root)
    if framed or rolled:
        train = read_mtfl(Path(root) / "MTFL" / "training.txt", Path(root) / "MTFL")
        upright, turned = validation_faces(train, framed, rolled)
        if framed:
            sets[FRAMED] = upright
        if rolled:   # other faces than the framed set's, never S-Net's
            sets[ROLLED] = turned
    return sets


def measure_recall(model, sets: dict, rows: dict, limit: int = 0, log=print) -> dict:
    """For each set and row: faces missed, R-Net / O-Net crops per image, ms per image."""
    default = default_row()
    out = {}
    for set_name, samples in sets.items():
        samples = samples[:limit] if limit else samples
        if set_name == FRAMED:
            samples, colour = framed_faces(samples)
        elif set_name == ROLLED:
            samples, colour = framed_faces(samples, max_roll=60)
        else:
            _, colour = load_images(samples, True)
        results = {}
        for name, change in rows.items():
            row = dict(default, **(change or {}))
            det = make_detector(model, row_settings(row))
            counts = {24: 0, 48: 0}
            start = time.perf_counter()
            boxes = boxes_for(samples, "detector", det, colour, counts)
            seconds = time.perf_counter() - start
            n = len(samples)
            results[name] = {**{k: list(v) if isinstance(v, tuple) else v for k, v in row.items()},
                             "faces": n, "missed": sum(b is None for b in boxes),
                             "rnet_crops_per_image": counts[24] / n,
                             "onet_crops_per_image": counts[48] / n,
                             "ms_per_image": 1e3 * seconds / n}
            r = results[name]
            log(f"{set_name}: {name}: missed {r['missed']} of {n}; R-Net "
                f"{r['rnet_crops_per_image']:.1f}, O-Net {r['onet_crops_per_image']:.1f} crops "
                f"per image; {r['ms_per_image']:.1f} ms per image")
        out[set_name] = results
    return out
