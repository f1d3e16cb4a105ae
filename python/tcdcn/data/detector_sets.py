"""Validation faces for detector settings: 300-W, non-frontal MTFL, faces framed like AFLW's."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tcdcn.data.datasets import DataError, Sample, load_samples, read_mtfl
from tcdcn.image import load_image


def detector_validation_sets(root: Path) -> dict[str, list[Sample]]:
    """Faces outside the AFLW test set on which detector settings are chosen
    (tools/mtcnn_recall.py, tools/turn_check.py): 300-W AFW + HELEN train (68 points) and
    the MTFL training faces whose pose label is not frontal, less those S-Net, the
    detector's first stage, learnt from (detector_sets.training_faces)."""
    pass
    frontal = 2   # pose classes 0..4 (schemes.TASKS), 2 = frontal
    root = Path(root)
    learnt = {str(s.image) for s in training_faces(root)}
    return {"300-W AFW + HELEN train": load_samples("300w", root, None)[0],
            "MTFL training, non-frontal": [
                s for s in read_mtfl(root / "MTFL" / "training.txt", root / "MTFL")
                if int(s.attributes[-1]) != frontal and str(s.image) not in learnt]}


# How the AFLW test images (MTFL testing.txt) frame their faces: 150x150 crops in which the
# five points span 0.355 (sd 0.035) of the side, their mean at 0.489, 0.487 (sd 0.043) of it.
# Measured once from those images' point files (the test images' format, like their size);
# nothing is chosen on how a detector does on them.
AFLW_FRAMING = {"size": 150, "span": (0.355, 0.035), "centre": (0.489, 0.487), "centre_sd": 0.043}


def framed_faces(samples: list[Sample], seed: int = 0, framing: dict = AFLW_FRAMING,
                 max_roll: float = 0.0) -> tuple[list[Sample], dict]:
    """Validation faces cropped the way the AFLW test images are (AFLW_FRAMING: tight
    150x150 crops, faces often touching the edges), each with its own random span and
    centre: a detector's misses on tight crops measured without the test set. max_roll > 0
    also turns each face in the image plane by a random angle, uniform within +-max_roll
    degrees, about its points' mean before framing (rolled heads: MTCNN misses faces rolled
    beyond about 30 degrees). Returns the moved samples (their image is a key of the
    returned dict of BGR crops)."""
    rng = np.random.default_rng(seed)
    roll_rng = np.random.default_rng([seed, 1])   # the framing draws stay as without roll
    size = framing["size"]
    mean_span, sd_span = framing["span"]
    out, images = [], {}
    for s in samples:
        try:
            image = load_image(s.image)
        except (OSError, ValueError) as err:
            raise DataError(f"{s.source}: {err}") from None
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        pts = np.asarray(s.landmarks, dtype=np.float64)
        turn = np.array([[1.0, 0, 0], [0, 1, 0]])
        if max_roll > 0:
            c = pts.mean(axis=0)
            turn = cv2.getRotationMatrix2D((float(c[0]), float(c[1])),
                                           float(roll_rng.uniform(-max_roll, max_roll)), 1.0)
        pts = pts @ turn[:, :2].T + turn[:, 2]
        span = float(np.ptp(pts, axis=0).max())
        side = span / float(np.clip(rng.normal(mean_span, sd_span), mean_span - 3 * sd_span,
                                    mean_span + 3 * sd_span))
        centre = np.asarray(framing["centre"]) + rng.normal(0, framing["centre_sd"], 2)
        origin = pts.mean(axis=0) - centre * side     # the crop's top-left corner
        k = size / side
        m = np.array([[k, 0, -origin[0] * k], [0, k, -origin[1] * k]])
        warp = np.hstack([m[:, :2] @ turn[:, :2], (m[:, :2] @ turn[:, 2] + m[:, 2])[:, None]])
        key = f"framed:{s.source or s.image}"
        images[key] = cv2.warpAffine(image, warp, (size, size), flags=cv2.INTER_AREA,
                                     borderMode=cv2.BORDER_CONSTANT)
        out.append(Sample(Path(key), pts * k + m[:, 2], s.attributes, None, s.source, s.group,
                          dict(s.extra)))
    return out, images


# The MTFL training faces of the detector validation sets (tools/mtcnn_recall.py's framed and
# rolled sets, tools/train_snet.py's validation) come from fixed slices of one permutation;
# S-Net learns from the rest
FRAMED_POOL, ROLLED_POOL = 4000, 2000


HELD_OUT = FRAMED_POOL + ROLLED_POOL


def _order(n: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n)


def validation_faces(train: list, framed: int = FRAMED_POOL, rolled: int = ROLLED_POOL):
    """The MTFL training faces (`train`: training.txt as read) that the detector validation
    sets frame: `framed` of the FRAMED_POOL faces kept for framing upright, `rolled` of the
    ROLLED_POOL kept for framing rolled; S-Net learnt from none of them."""
    if not (0 <= framed <= FRAMED_POOL and 0 <= rolled <= ROLLED_POOL):
        raise ValueError(f"at most {FRAMED_POOL} framed and {ROLLED_POOL} rolled validation "
                         f"faces, not {framed} and {rolled}")
    order = _order(len(train))
    return ([train[i] for i in sorted(order[:framed])],
            [train[i] for i in sorted(order[FRAMED_POOL:FRAMED_POOL + rolled])])


def training_faces(root: Path):
    """The MTFL training faces S-Net learns from: those validation_faces() never uses."""
    train = read_mtfl(Path(root) / "MTFL" / "training.txt", Path(root) / "MTFL")
    return [train[i] for i in sorted(_order(len(train))[HELD_OUT:])]
