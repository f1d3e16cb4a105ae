"""Two models on the same faces, face by face: the difference of their NMEs with a paired
bootstrap interval, so that a small validation split says how sure a comparison is."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from tcdcn.data.datasets import Sample
from tcdcn.evaluation.evaluate import check_faces, find_boxes, load_images
from tcdcn.evaluation.metrics import point_errors


def per_face_nme(model, samples: list[Sample], mode: str = "landmarks") -> np.ndarray:
    """Each face's NME in percent (the scheme's normaliser) on `mode` boxes (evaluate's
    modes but "detector": a miss has no error to pair)."""
    if mode == "detector":
        raise ValueError("per-face NMEs pair found faces only: use list or landmark boxes")
    images, _ = load_images(samples, False)
    check_faces(model, samples, images)
    boxes = find_boxes(model, samples, mode, images=images)
    pred = np.zeros((len(samples), model.scheme.count, 2))
    by_image = defaultdict(list)
    for i, s in enumerate(samples):
        by_image[str(s.image)].append(i)
    for key, idx in by_image.items():
        for i, face in zip(idx, model.predict(images[key], np.array([boxes[i] for i in idx]))):
            pred[i] = face.landmarks
    gt = np.array([s.landmarks for s in samples])
    return 100 * point_errors(pred, gt, model.scheme).mean(axis=1)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, rounds: int = 10000, seed: int = 0) -> dict:
    """mean(a - b) over the faces, its 95% interval from resampling the faces, and the
    share of faces on which b is the better."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"faces": len(diff), "mean_difference": float(diff.mean()), "interval_95": [float(lo), float(hi)],
            "b_better_on": float(np.mean(diff > 0))}


def pooled_bootstrap(pairs: list[tuple[np.ndarray, np.ndarray]], rounds: int = 10000,
                     seed: int = 0) -> dict:
    """Paired differences on several validation splits (each pair: A's and B's per-face NMEs
    on one split; pairs of models trained on that split's training faces), each split
    weighted equally: the mean of the per-split mean differences, its 95% interval from
    resampling the faces within every split, each split's own difference, and their spread
    (standard deviation across splits: how far one split's verdict can be from another's)."""
    diffs = [np.asarray(a, np.float64) - np.asarray(b, np.float64) for a, b in pairs]
    if not diffs or any(len(d) == 0 for d in diffs):
        raise ValueError("every split needs faces")
    rng = np.random.default_rng(seed)
    means = np.zeros(rounds)
    for d in diffs:
        means += d[rng.integers(0, len(d), (rounds, len(d)))].mean(axis=1)
    means /= len(diffs)
    lo, hi = np.percentile(means, [2.5, 97.5])
    per_split = [float(d.mean()) for d in diffs]
    return {"splits": len(diffs), "faces": [len(d) for d in diffs],
            "mean_difference": float(np.mean(per_split)), "interval_95": [float(lo), float(hi)],
            "per_split": per_split,
            "spread_across_splits": float(np.std(per_split, ddof=1)) if len(diffs) > 1 else None,
            "b_better_on": float(np.mean(np.concatenate(diffs) > 0))}
