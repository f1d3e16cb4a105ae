"""Evaluate a model on a face list: landmarks (NME, failures, AUC, CED) and attributes.

Boxes: `list` uses the list's own boxes; `landmarks` derives them from the true points with
the calibrated rule of boxes.py (as for training faces without boxes); `detector` runs MTCNN
(the default; crops from its calibrated box or, where model.json says so, from its five
points through the box rule) or the Haar cascades, and takes, for each face, the detection
that overlaps its landmark-derived box most; a face whose best detection overlaps less than
MIN_IOU is a miss and counts as a failure. Detectors run as the given
factory.DetectorSettings say, by default as Detector() runs them: with a replicated border
(search.DEFAULT_PADS: 10% of the longer side, else 25%, else 50% while no face scored 0.9),
since tight crops such as AFLW's have faces touching the edges.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from tcdcn.boxes import box_from_landmarks
from tcdcn.data.datasets import DataError, Sample
from tcdcn.detection.base import Search, iou
from tcdcn.detection.factory import DetectorSettings, crop_placement, make_detector
from tcdcn.detection.search import describe_pads, describe_turns
from tcdcn.evaluation.metrics import (
    attribute_report,
    landmark_report,
    normaliser,
    per_face,
    uncertainty_report,
)
from tcdcn.image import load_image, to_grey
from tcdcn.landmarks import eye_distance
from tcdcn.schemes import IBUG68_PUPILS, TASKS

MIN_IOU = 0.3


def boxes_for(samples: list[Sample], mode: str, detector=None,
              images: dict | None = None, counts: dict | None = None
              ) -> list[np.ndarray | None]:
    """Each face's box (None for a miss): the list's, the landmark-derived one, or the
    detection (factory.BuiltDetector) that overlaps it most; `counts` tallies the detector's
    crops (base.Search.counts)."""
    if mode == "list":
        missing = [s.source for s in samples
                   if s.box is None or s.extra.get("box_from", "list") != "list"]
        if missing:
            raise DataError(f"{missing[0]}: the list has no box for this face "
                            f"({len(missing)} faces); use --boxes landmarks or detector")
        return [s.box for s in samples]
    if mode == "landmarks":
        return [box_from_landmarks(s.landmarks) for s in samples]
    if mode == "detector":
        out = []
        cache: dict = {}
        for s in samples:
            key = str(s.image)
            if key not in cache:   # boxes with their turn (search.Turned)
                cache[key] = detector.oriented(images[key], Search(counts))[0]
            found = cache[key]
            ref = box_from_landmarks(s.landmarks)
            if len(found) == 0:
                out.append(None)
                continue
            overlaps = [iou(f[:4], ref) for f in found]
            best = int(np.argmax(overlaps))
            out.append(found[best] if overlaps[best] >= MIN_IOU else None)
        return out
    raise ValueError(f"unknown box mode {mode!r}")


def numbers_key(prefix: str, detector: str, crop_from: str, refine: int) -> str:
    """The name of a detector measurement in model.json's numbers: e.g.
    validation_mtcnn_points_refined (tools/release_model.py writes, model_table.py reads)."""
    return (f"{prefix}_{detector}_{'boxes' if crop_from == 'box' else 'points'}"
            + ("_refined" if refine else ""))


def load_images(samples: list[Sample], want_colour: bool) -> tuple[dict, dict]:
    """Grey images by path, and the colour ones too when a detector wants colour (MTCNN);
    each file is decoded once."""
    images, colour = {}, {}
    for s in samples:
        key = str(s.image)
        if key in images:
            continue
        try:   # decoded as the API and the LMDB writer decode (one crop path)
            image = load_image(s.image)
        except (OSError, ValueError) as err:
            raise DataError(f"{s.source}: {err}") from None
        if want_colour:
            colour[key] = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        images[key] = to_grey(image)
    return images, colour


OUTSIDE = 0.5   # points may lie this share of the image's side beyond its edges, no more


def check_faces(model, samples: list[Sample], images: dict) -> None:
    """Faces the model can be measured on, else a DataError naming the list line: some
    faces; the model's number of points; points that are finite and near their image (a
    face of a cropped photo may reach past its edges, not 1,000 pixels); eye points apart
    (the normaliser)."""
    if not samples:
        raise DataError("no faces to evaluate (an empty list?)")
    count = model.scheme.count
    for s in samples:
        pts = np.asarray(s.landmarks, dtype=np.float64)
        if pts.shape != (count, 2):
            raise DataError(f"{s.source}: {len(pts)} points, but the model "
                            f"{model.folder.name} predicts {count} ({model.scheme.name}): use "
                            f"a {len(pts)}-point model for these faces")
        h, w = images[str(s.image)].shape[:2]
        far = (~np.isfinite(pts).all(axis=1) | (pts[:, 0] < -OUTSIDE * w)
               | (pts[:, 0] > (1 + OUTSIDE) * w) | (pts[:, 1] < -OUTSIDE * h)
               | (pts[:, 1] > (1 + OUTSIDE) * h))
        if far.any():
            i = int(np.argmax(far))
            raise DataError(f"{s.source}: point {i + 1} ({pts[i, 0]:.6g}, {pts[i, 1]:.6g}) lies "
                            f"far outside its {w}x{h} image {s.image}")
        if normaliser(pts[None], model.scheme)[0] <= 1e-6:
            raise DataError(f"{s.source}: the eye points coincide (the normalising distance "
                            "is 0): the points are not a face's")


def find_boxes(model, samples: list[Sample], mode: str,
               settings: DetectorSettings | None = None, images=None, colour=None) -> list:
    """The box (or None for a miss) evaluate() would use for each face."""
    settings = settings or DetectorSettings()
    if images is None:
        images, colour = load_images(samples, mode == "detector" and settings.name == "mtcnn")
    detector = make_detector(model, settings) if mode == "detector" else None
    return boxes_for(samples, mode, detector, colour or images)


def evaluate(model, samples: list[Sample], mode: str, settings: DetectorSettings | None = None,
             refine: int = 0, boxes=None) -> dict:
    """Run `model` (landmarks.LandmarkModel) on every face; the report as a dict.
    `settings`: the detector's, for mode "detector" (default: Detector()'s). `boxes` (one
    per sample, None for a miss) skips box finding: reuse them when the same faces are
    evaluated twice, e.g. with and without refinement."""
    settings = settings or DetectorSettings()
    images, colour = load_images(samples, mode == "detector" and settings.name == "mtcnn")
    check_faces(model, samples, images)
    if boxes is None:
        boxes = find_boxes(model, samples, mode, settings, images, colour)
    k = model.scheme.count
    pred = np.full((len(samples), k, 2), np.nan)
    attr_pred = {t.name: np.full(len(samples), -1) for t in model.tasks}
    point_unc = np.full((len(samples), k), np.nan)   # over the predicted eye distance
    face_unc = np.full(len(samples), np.nan)         # predicted NME
    by_image = defaultdict(list)
    for i, (s, b) in enumerate(zip(samples, boxes)):
        if b is not None:
            by_image[str(s.image)].append(i)
    for key, idx in by_image.items():
        faces = model.predict(images[key], np.array([boxes[i] for i in idx]), refine=refine)
        for i, face in zip(idx, faces):
            pred[i] = face.landmarks
            if face.uncertainty is not None:
                point_unc[i] = face.uncertainty / eye_distance(face.landmarks)
                face_unc[i] = point_unc[i].mean()   # = landmarks.expected_nme
            for t in model.tasks:
                attr_pred[t.name][i] = t.classes.index(face.attributes[t.name][0])
    gt = np.array([s.landmarks for s in samples])
    report = {"boxes": mode if mode != "detector" else
              f"detector ({describe_detector(model, settings)})",
              "refine": refine,
              **landmark_report(pred, gt, model.scheme)}
    if getattr(model, "uncertainty", ""):
        report["uncertainty"] = uncertainty_report(pred, gt, model.scheme, point_unc, face_unc)
    report["per_face"] = per_face(pred, gt, model.scheme, face_unc)
    if model.scheme.count == 68:
        report["inter_pupil"] = landmark_report(pred, gt, model.scheme, groups=IBUG68_PUPILS)
    if all(s.attributes is not None for s in samples) and model.tasks:
        found = ~np.isnan(pred).any(axis=(1, 2))
        report["attributes"] = {}
        for ti, t in enumerate(TASKS):
            if t not in model.tasks:
                continue
            truth = np.array([s.attributes[ti] for s in samples])
            report["attributes"][t.name] = attribute_report(attr_pred[t.name][found],
                                                            truth[found], t.classes)
    return report


def describe_detector(model, settings: DetectorSettings) -> str:
    """The detector of a report, in words: its name, borders, turns and crop placement."""
    crop_from = settings.crop_from or crop_placement(model.meta, settings.name)
    return (f"{settings.name}, {describe_pads(settings.pad)}, "
            f"{describe_turns(settings.turns if settings.name == 'mtcnn' else ())}, "
            f"crops from its {'points' if crop_from == 'points' else 'calibrated box'}")


def plot_ced(reports: dict[str, dict], path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for label, r in reports.items():
        ax.plot(100 * np.array(r["ced"]["thresholds"]), r["ced"]["fraction"],
                label=f"{label}: NME {r['nme_mean']:.2f}%, FR {r['failure_rate']:.1f}%, "
                      f"AUC {r['auc_10']:.3f}")
    ax.set_xlabel("NME (% of inter-ocular distance)")
    ax.set_ylabel("fraction of faces")
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def format_table(report: dict) -> str:
    lines = [f"faces {report['n_faces']}  (predicted {report['n_predicted']}, "
             f"missed {report['misses']}; boxes: {report['boxes']})",
             f"NME mean {_pct(report['nme_mean'])}%  median {_pct(report['nme_median'])}%  "
             f"FR@10% {report['failure_rate']:.2f}%  AUC@10% {report['auc_10']:.4f}",
             ]
    if "inter_pupil" in report:
        ip = report["inter_pupil"]
        lines.append(f"inter-pupil: NME mean {_pct(ip['nme_mean'])}%  FR@10% "
                     f"{ip['failure_rate']:.2f}%  AUC@10% {ip['auc_10']:.4f}")
    if "per_region" in report:
        lines.append("per region: " + "  ".join(f"{k} {_pct(v)}%"
                                                for k, v in report["per_region"].items()))
    else:
        lines.append("per landmark: " + "  ".join(f"{k} {_pct(v)}%"
                                                  for k, v in report["per_landmark"].items()))
    if "uncertainty" in report:
        u = report["uncertainty"]
        num = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"uncertainty: Spearman per face {num(u['spearman_face'])}, per point "
                     f"{num(u['spearman_point'])}; AUROC for failures (NME > 10%, "
                     f"{u['n_failures']} of {u['n_faces']}) {num(u['auroc_failures'])}, NME > 5% "
                     f"({u['n_over_5']}) {num(u['auroc_over_5'])}; "
                     f"mean predicted NME {_pct(u['mean_predicted_nme'])}% (actual "
                     f"{_pct(u['mean_nme'])}%)")
    for name, a in report.get("attributes", {}).items():
        lines.append(f"{name:8s} accuracy {a['accuracy']:.2f}%  (majority baseline "
                     f"{a['majority_baseline']:.2f}%)  confusion {a['confusion']}")
    return "\n".join(lines)
