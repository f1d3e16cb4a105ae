"""Landmark and attribute metrics: NME, failure rate, AUC, CED, per-landmark errors."""
from __future__ import annotations

import numpy as np

from tcdcn.schemes import IBUG68_REGIONS, LandmarkScheme

FAILURE_THRESHOLD = 0.10   # a face whose NME exceeds this is a failure


AUC_LIMIT = 0.10


def normaliser(gt: np.ndarray, scheme: LandmarkScheme, groups=None) -> np.ndarray:
    """Per-face normalising distance: between the scheme's two ocular points (or the
    centres of two point groups). gt: F x K x 2."""
    a, b = groups or scheme.ocular
    pa = gt[:, list(a)].mean(axis=1)
    pb = gt[:, list(b)].mean(axis=1)
    return np.linalg.norm(pa - pb, axis=1)


def point_errors(pred: np.ndarray, gt: np.ndarray, scheme: LandmarkScheme, groups=None) -> np.ndarray:
    """F x K errors in units of the normalising distance; rows of NaN for missed faces."""
    d = normaliser(gt, scheme, groups)
    return np.linalg.norm(pred - gt, axis=2) / d[:, None]


def landmark_report(pred: np.ndarray, gt: np.ndarray, scheme: LandmarkScheme,
                    groups=None) -> dict:
    """pred has NaN rows for faces without a prediction (detector misses): they count as
    failures and in the AUC, and are left out of the means."""
    err = point_errors(pred, gt, scheme, groups)
    found = ~np.isnan(err).any(axis=1)
    nme = err.mean(axis=1)                       # NaN for misses
    nme_all = np.where(found, nme, np.inf)
    thresholds = np.linspace(0, AUC_LIMIT, 1001)
    ced = np.array([(nme_all <= t).mean() for t in thresholds])
    auc = float(np.trapezoid(ced, thresholds) / AUC_LIMIT)
    return {
        "n_faces": int(len(gt)),
        "n_predicted": int(found.sum()),
        "misses": int((~found).sum()),
        "nme_mean": float(100 * nme[found].mean()) if found.any() else None,
        "nme_median": float(100 * np.median(nme[found])) if found.any() else None,
        "failure_rate": float(100 * (nme_all > FAILURE_THRESHOLD).mean()),
        "auc_10": auc,
        "per_landmark": {name: float(100 * err[found, i].mean()) if found.any() else None
                         for i, name in enumerate(scheme.names)},
        "ced": {"thresholds": thresholds[::10].tolist(), "fraction": ced[::10].tolist()},
        **({"per_region": {name: float(100 * err[found][:, list(idx)].mean())
                           if found.any() else None for name, idx in IBUG68_REGIONS.items()}}
           if scheme.count == 68 else {}),
    }


def attribute_report(pred: np.ndarray, gt: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, majority-class baseline and confusion matrix (rows: truth, cols: predicted)."""
    k = len(classes)
    confusion = np.zeros((k, k), dtype=int)
    for t, p in zip(gt, pred):
        confusion[int(t), int(p)] += 1
    counts = confusion.sum(axis=1)
    return {
        "n": int(len(gt)),
        "accuracy": float(100 * np.trace(confusion) / max(1, len(gt))),
        "majority_baseline": float(100 * counts.max() / max(1, len(gt))),
        "classes": list(classes),
        "confusion": confusion.tolist(),
    }
