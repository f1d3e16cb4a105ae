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


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their mean rank."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    r = np.empty(len(values))
    r[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return sums[inverse] / counts[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (None for fewer than 3 values or a constant input)."""
    if len(a) < 3:
        return None
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of `scores` for finding the `positive` items (the
    Mann-Whitney statistic: the chance a random positive scores above a random negative,
    ties counting half); None without both classes."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    r = ranks(scores)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def uncertainty_report(pred: np.ndarray, gt: np.ndarray, scheme: LandmarkScheme,
                       point_unc: np.ndarray, face_unc: np.ndarray) -> dict:
    """How well predicted errors rank the actual ones. point_unc: F x K predicted point
    errors divided by the *predicted* eye distance; face_unc: F predicted NMEs (their mean,
    Face.quality's input): computed from predictions alone. Actual errors are in units of
    the ground truth's normaliser. Missed faces (NaN rows) are left out."""
    err = point_errors(pred, gt, scheme)
    found = ~np.isnan(err).any(axis=1) & ~np.isnan(face_unc)
    nme = err.mean(axis=1)
    failures = nme[found] > FAILURE_THRESHOLD
    return {
        "n_faces": int(found.sum()),
        "n_failures": int(failures.sum()),
        "spearman_face": spearman(face_unc[found], nme[found]),
        "spearman_point": spearman(point_unc[found].ravel(), err[found].ravel()),
        "auroc_failures": auroc(face_unc[found], failures),
        # a steadier companion where failures are few: faces over half the threshold
        "n_over_5": int((nme[found] > FAILURE_THRESHOLD / 2).sum()),
        "auroc_over_5": auroc(face_unc[found], nme[found] > FAILURE_THRESHOLD / 2),
        "mean_predicted_nme": float(100 * face_unc[found].mean()) if found.any() else None,
        "mean_nme": float(100 * nme[found].mean()) if found.any() else None,
    }


def per_face(pred: np.ndarray, gt: np.ndarray, scheme: LandmarkScheme,
             face_unc: np.ndarray | None = None) -> list[dict]:
    """Each face's NME and predicted NME (percent; None for a miss, or a model without an
    uncertainty head), in the order of the faces."""
    nme = point_errors(pred, gt, scheme).mean(axis=1)
    face_unc = np.full(len(nme), np.nan) if face_unc is None else face_unc
    num = lambda v: None if np.isnan(v) else round(float(100 * v), 3)  # noqa: E731
    return [{"nme": num(a), "uncertainty": num(np.nan if np.isnan(a) else u)}
            for a, u in zip(nme, face_unc)]
