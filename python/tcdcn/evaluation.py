"""Evaluate a model on a face list: landmarks (NME, failures, AUC, CED) and attributes.

Boxes: `list` uses the list's own boxes; `landmarks` derives them from the true points with
the calibrated rule of boxes.py (as for training faces without boxes); `detector` runs MTCNN
(the default; crops from its calibrated box or, where model.json says so, from its five
points through the box rule) or the Haar cascades, and takes, for each face, the detection
that overlaps its landmark-derived box most; a face whose best detection overlaps less than
MIN_IOU is a miss and counts as a failure. Detectors run as Detector() runs them by
default: with a replicated border (detect.DEFAULT_PADS: 10% of the longer side, else 25%,
else 50% while no face scored 0.9), since tight crops such as AFLW's have faces touching
the edges.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from tcdcn.boxes import box_from_landmarks
from tcdcn.datasets import DataError, Sample
from tcdcn.detect import Calibration, FirstFound, HaarDetector, Padded, Turned, describe_pads, \
    describe_turns, iou, is_quarter, oriented_boxes, pad_list, turn_list
from tcdcn.metrics import attribute_report, landmark_report
from tcdcn.schemes import IBUG68_PUPILS, TASKS

MIN_IOU = 0.3


def boxes_for(samples: list[Sample], mode: str, detector=None,
              images: dict | None = None) -> list[np.ndarray | None]:
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
            if key not in cache:   # boxes with their turn (detect.Turned)
                cache[key] = oriented_boxes(detector, images[key])[0]
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


DETECT_PAD = "auto"   # the borders Detector() adds by default (detect.DEFAULT_PADS)
DETECT_TURNS = "auto"   # the turns Detector() tries by default (detect.DEFAULT_TURNS)


def crop_placement(meta: dict, detector: str) -> str:
    """Where this model's crops come from with a detector: model.json's detector_crop
    ("box": the calibrated box, "points": the detector's five points), else "box"."""
    return meta.get("detector_crop", {}).get(detector, "box")


def numbers_key(prefix: str, detector: str, crop_from: str, refine: int) -> str:
    """The name of a detector measurement in model.json's numbers: e.g.
    validation_mtcnn_points_refined (tools/release_model.py writes, model_table.py reads)."""
    return (f"{prefix}_{detector}_{'boxes' if crop_from == 'box' else 'points'}"
            + ("_refined" if refine else ""))


def make_detector(model, name: str = "mtcnn", mtcnn_dir=None, pad=DETECT_PAD,
                  crop_from: str | None = None, min_size: int = 20, turns=DETECT_TURNS,
                  last_resort="auto", proposals: str = "snet", snet_dir=None,
                  fallback_min_face: float | None = None):
    """The named detector with the model's stored calibration for it, run with a border,
    and (MTCNN only) where that finds no confident face, on the image turned by `turns`
    (detect.Turned), and where nothing at all was found, once more with the cascade
    thresholds `last_resort` ("auto": mtcnn.LAST_RESORT; None: off).
    proposals (MTCNN only): "snet" runs S-Net (tcdcn.snet, models/snet) instead of P-Net
    and R-Net, and where that found no face at all S-Net once more with O-Net's second
    look, then the classic search (the quarter turns, every border, its last resort);
    "pnet" the classic cascade alone (with every turn). fallback_min_face (S-Net only): the
    smallest face, in min_size units, of the classic search S-Net falls back to (None:
    mtcnn.FALLBACK_MIN_FACE; 1: every size).
    crop_from "points" (MTCNN only) places crops from the detector's five points through the
    model's box rule; "box" from its calibrated box; None: as model.json says (else "box")."""
    calib = Calibration(**model.meta.get("detector_calibration", {}).get(name, {}))
    if crop_from is None:
        crop_from = crop_placement(model.meta, name)
    if crop_from not in ("box", "points"):
        raise ValueError(f"crop_from must be 'box' or 'points', not {crop_from!r}")
    if name == "haar":
        if crop_from == "points":
            raise ValueError("the Haar detector gives no points: use crop_from='box'")
        base = HaarDetector(calib, min_size=min_size)
    elif name == "mtcnn":
        from tcdcn.mtcnn import MTCNNDetector
        base = MTCNNDetector(mtcnn_dir, calib, min_size=min_size)
    else:
        raise ValueError(f"detector must be 'mtcnn' or 'haar', not {name!r}")

    def chain(pads, cascade=base):
        # Haar's scores are level weights, not probabilities: frontal detections (>= 100)
        # end the border search as a face scoring PAD_RETRY_BELOW does, profile-only ones
        # (small weights) let the wider borders try
        detector = Padded(cascade, pads) if pad_list(pads) != (0.0,) else cascade
        if crop_from == "points":
            from tcdcn.boxes import rule_for
            from tcdcn.detect import FromPoints
            detector = FromPoints(detector, rule_for(model.scheme.count))
        return detector
    if proposals not in ("snet", "pnet"):
        raise ValueError(f"proposals must be 'snet' or 'pnet', not {proposals!r}")
    if name != "mtcnn":   # the turns' score thresholds are MTCNN's probabilities
        if turns not in (None, "auto") and turn_list(turns):
            raise ValueError("turns need MTCNN's face scores: use detector='mtcnn' or turns=()")
        return chain(pad)
    # the upright image and the turned ones get the first border (each turn costs one
    # detection on face-free images, not one per border); the later borders are searched,
    # upright, where no turn won; the last resort where nothing at all was found
    pads = pad_list(pad)
    import tcdcn.mtcnn
    if last_resort == "auto":
        last_resort = tcdcn.mtcnn.LAST_RESORT

    def last_for(cascade):   # where nothing at all was found: the same nets, other bars
        if last_resort is None:
            return None
        relaxed = copy.copy(cascade)
        relaxed.thresholds = tuple(float(t) for t in last_resort)
        return chain(pads, relaxed)
    if proposals == "pnet":
        return Turned(chain(pads[:1]), turns,
                      more_borders=chain(pads[1:]) if len(pads) > 1 else None,
                      last_resort=last_for(base), new_image=base.forget)
    from tcdcn.snet import SNetNet
    fast = copy.copy(base)   # the same O-Net, S-Net's proposals
    # S-Net runs where the landmark model runs: this project's Caffe where it is built (its
    # direct convolution, caffe_patches/0207, takes 0.36-0.40 ms for a 150 px photo's two
    # passes against OpenCV's 0.54-0.58: strided and dilated layers), else OpenCV dnn.
    # MTCNN's nets stay on OpenCV, faster there (tools/bench_inference.py)
    fast.first_stage = SNetNet(snet_dir, backend=model.backend)
    turned = copy.copy(fast)   # the turns compete on their scores: O-Net looks twice
    turned.recheck_below = 1.0
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
    relook = copy.copy(fast)
    relook.relook_above = tcdcn.mtcnn.RELOOK_ABOVE
    # the classic search after S-Net's: no pyramid levels for faces under
    # mtcnn.FALLBACK_MIN_FACE x min_size (S-Net searched those sizes)
    large = copy.copy(base)
    large.min_face_factor = (tcdcn.mtcnn.FALLBACK_MIN_FACE if fallback_min_face is None
                             else float(fallback_min_face))
    fallback = FirstFound(
        chain(pads, relook),
        Turned(chain(pads[:1], large), tuple(t for t in turn_list(turns) if is_quarter(t)),
               more_borders=chain(pads[1:], large) if len(pads) > 1 else None,
               last_resort=last_for(large)))
    return Turned(chain(pads[:1], fast), turns, turned_detector=chain(pads[:1], turned),
                  more_borders=chain(pads[1:], fast) if len(pads) > 1 else None,
                  last_resort=fallback, new_image=lambda: (fast.first_stage.forget(),
                                                           base.forget()))


def detector_validation_sets(root: Path) -> dict[str, list[Sample]]:
    """Faces outside the AFLW test set on which detector settings are chosen
    (tools/mtcnn_recall.py, tools/turn_check.py): 300-W AFW + HELEN train (68 points) and
    the MTFL training faces whose pose label is not frontal, less those S-Net, the
    detector's first stage, learnt from (snet.training_faces)."""
    from tcdcn.datasets import read_mtfl
    from tcdcn.lmdb_build import load_samples
    from tcdcn.snet import training_faces
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
    from tcdcn.api import load_image
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


def load_images(samples: list[Sample], want_colour: bool) -> tuple[dict, dict]:
    """Grey images by path, and the colour ones too when a detector wants colour (MTCNN);
    each file is decoded once."""
    from tcdcn.api import load_image
    from tcdcn.inference import to_grey
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


def find_boxes(model, samples: list[Sample], mode: str, detector_name: str = "mtcnn",
               mtcnn_dir=None, pad=DETECT_PAD, images=None, colour=None,
               crop_from: str | None = None, turns=DETECT_TURNS) -> list:
    """The box (or None for a miss) evaluate() would use for each face."""
    if images is None:
        images, colour = load_images(samples, mode == "detector" and detector_name == "mtcnn")
    detector = (make_detector(model, detector_name, mtcnn_dir, pad, crop_from, turns=turns)
                if mode == "detector" else None)
    return boxes_for(samples, mode, detector, colour or images)


def evaluate(model, samples: list[Sample], mode: str, detector_name: str = "mtcnn",
             mtcnn_dir=None, refine: int = 0, pad=DETECT_PAD, boxes=None,
             crop_from: str | None = None, turns=DETECT_TURNS) -> dict:
    """Run `model` (inference.LandmarkModel) on every face; the report as a dict.
    `boxes` (one per sample, None for a miss) skips box finding: reuse them when the same
    faces are evaluated twice, e.g. with and without refinement."""
    images, colour = load_images(samples, mode == "detector" and detector_name == "mtcnn")
    if boxes is None:
        boxes = find_boxes(model, samples, mode, detector_name, mtcnn_dir, pad, images, colour,
                           crop_from, turns)
    k = model.scheme.count
    pred = np.full((len(samples), k, 2), np.nan)
    attr_pred = {t.name: np.full(len(samples), -1) for t in model.tasks}
    by_image = defaultdict(list)
    for i, (s, b) in enumerate(zip(samples, boxes)):
        if b is not None:
            by_image[str(s.image)].append(i)
    for key, idx in by_image.items():
        faces = model.predict(images[key], np.array([boxes[i] for i in idx]), refine=refine)
        for i, face in zip(idx, faces):
            pred[i] = face.landmarks
            for t in model.tasks:
                attr_pred[t.name][i] = t.classes.index(face.attributes[t.name][0])
    gt = np.array([s.landmarks for s in samples])
    if crop_from is None:
        crop_from = crop_placement(model.meta, detector_name)
    report = {"boxes": mode if mode != "detector" else
              f"detector ({detector_name}, {describe_pads(pad)}, "
              f"{describe_turns(turns if detector_name == 'mtcnn' else ())}, "
              f"crops from its "
              f"{'points' if crop_from == 'points' else 'calibrated box'})",

              "refine": refine,
              **landmark_report(pred, gt, model.scheme)}
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


def format_table(report: dict) -> str:
    lines = [f"faces {report['n_faces']}  (predicted {report['n_predicted']}, "
             f"missed {report['misses']}; boxes: {report['boxes']})",
             f"NME mean {report['nme_mean']:.2f}%  median {report['nme_median']:.2f}%  "
             f"FR@10% {report['failure_rate']:.2f}%  AUC@10% {report['auc_10']:.4f}",
             ]
    if "inter_pupil" in report:
        ip = report["inter_pupil"]
        lines.append(f"inter-pupil: NME mean {ip['nme_mean']:.2f}%  FR@10% "
                     f"{ip['failure_rate']:.2f}%  AUC@10% {ip['auc_10']:.4f}")
    if "per_region" in report:
        lines.append("per region: " + "  ".join(f"{k} {v:.2f}%"
                                                for k, v in report["per_region"].items()))
    else:
        lines.append("per landmark: " + "  ".join(f"{k} {v:.2f}%"
                                                  for k, v in report["per_landmark"].items()))
    for name, a in report.get("attributes", {}).items():
        lines.append(f"{name:8s} accuracy {a['accuracy']:.2f}%  (majority baseline "
                     f"{a['majority_baseline']:.2f}%)  confusion {a['confusion']}")
    return "\n".join(lines)
