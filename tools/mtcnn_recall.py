#!/usr/bin/env python3
"""MTCNN's recall and work on validation faces (never the test set), per cascade setting:
faces missed (no box, or none overlapping the face enough: evaluation.boxes_for) and R-Net /
O-Net crops per image, as Detector() runs it (borders, turns). Every row keeps this
release's order (first border, then the turns, then the later borders), so the "before"
rows differ from the previous releases' defaults in that too. The numbers behind
mtcnn.LAZY, mtcnn.NMS, mtcnn.MAX_REGRESSION, mtcnn.MAX_CANDIDATES, mtcnn.LAST_RESORT,
detect.DEFAULT_PADS / PAD_RETRY_BELOW, the tilts of detect.DEFAULT_TURNS, S-Net's
proposals (snet.PROPOSAL_THRESHOLD, snet.MAX_PROPOSALS) and mtcnn.FALLBACK_MIN_FACE.

  tools/mtcnn_recall.py --json benchmarks/mtcnn_recall.json [--limit N] [--framed N] [--rolled N]
                        [--only ROW ...]

Sets: 300-W (AFW + HELEN train, ROOT/300W), the non-frontal MTFL training faces (pose
label other than frontal) that S-Net did not learn from (tcdcn.snet.training_faces), N MTFL
training faces framed like the AFLW test images
(evaluation.framed_faces: tight 150x150 crops), and N others framed so and rolled
uniformly within +-60 degrees, all outside the AFLW test set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Each setting: mtcnn.MTCNNDetector's lazy / nms / max_regression, and the borders
# (detect.Padded's pads and retry_below; -inf: the next border only where none found a face)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(os.environ.get("TCDCN_DATA", "../shared/data")))
    p.add_argument("--model", type=Path, default=REPO / "models" / "tcdcn_5pt",
                   help="model whose MTCNN calibration is used (misses depend on it)")
    p.add_argument("--limit", type=int, default=0, help="faces per set (0: all)")
    p.add_argument("--framed", type=int, default=4000, metavar="N",
                   help="MTFL training faces framed like AFLW's test images (0: none)")
    p.add_argument("--rolled", type=int, default=2000, metavar="N",
                   help="other MTFL training faces framed so and rolled within +-60 degrees "
                        "(0: none)")
    p.add_argument("--json", type=Path)
    p.add_argument("--only", action="append", metavar="ROW", default=[],
                   help="run only this row (a name from SETTINGS, e.g. 'default'; repeatable); "
                        "with --json, the other rows of an existing file are kept as they "
                        "were measured, and the rerun is recorded in its 'reruns'")
    args = p.parse_args(argv)
    unknown = [name for name in args.only
               if not any(key.startswith(name) for key in SETTINGS)]
    if unknown:
        p.error(f"--only {unknown[0]!r}: no such row (rows: {', '.join(SETTINGS)})")
    settings = {k: v for k, v in SETTINGS.items()
                if not args.only or any(k.startswith(name) for name in args.only)}
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    cv2.setNumThreads(1)
    import tcdcn.mtcnn as mtcnn
    from tcdcn.detect import DEFAULT_PADS, DEFAULT_TURNS, PAD_RETRY_BELOW
    from tcdcn.evaluation import (boxes_for, detector_validation_sets, framed_faces,
                                  load_images, make_detector)
    from tcdcn.inference import LandmarkModel
    model = LandmarkModel(args.model)
    sets = detector_validation_sets(args.root)   # without S-Net's training faces
    framed, rolled = "MTFL training, framed like AFLW (150x150)", "... and rolled +-60 degrees"
    if args.framed or args.rolled:
        from tcdcn.datasets import read_mtfl
        from tcdcn.snet import validation_faces
        train = read_mtfl(args.root / "MTFL" / "training.txt", args.root / "MTFL")
        upright, turned = validation_faces(train, args.framed, args.rolled)
        if args.framed:
            sets[framed] = upright
        if args.rolled:   # other faces than the framed set's, never S-Net's
            sets[rolled] = turned
    counts = {24: 0, 48: 0}
    real = mtcnn._crops

    def counted(image, boxes, size):
        counts[size] += len(boxes)
        return real(image, boxes, size)

    mtcnn._crops = counted
    default = {"lazy": mtcnn.LAZY, "nms": mtcnn.NMS, "max_regression": mtcnn.MAX_REGRESSION,
               "max_candidates": mtcnn.MAX_CANDIDATES, "pads": DEFAULT_PADS,
               "retry_below": PAD_RETRY_BELOW, "turns": DEFAULT_TURNS,
               "last_resort": mtcnn.LAST_RESORT, "proposals": "snet", "fallback": True,
               "fallback_min_face": mtcnn.FALLBACK_MIN_FACE}
    report = {"tool": "tools/mtcnn_recall.py", "argv": argv if argv is not None else sys.argv[1:],
              "default": {k: list(v) if isinstance(v, tuple) else v for k, v in default.items()},
              "sets": {}}
    for set_name, samples in sets.items():
        samples = samples[:args.limit] if args.limit else samples
        if set_name == framed:
            samples, colour = framed_faces(samples)
        elif set_name == rolled:
            samples, colour = framed_faces(samples, max_roll=60)
        else:
            _, colour = load_images(samples, True)
        rows = {}
        for name, setting in settings.items():
            setting = dict(default, **(setting or {}))
            det = make_detector(model, "mtcnn", pad=setting["pads"], turns=setting["turns"],
                                last_resort=setting["last_resort"],
                                proposals=setting["proposals"],
                                fallback_min_face=setting["fallback_min_face"])
            if setting["proposals"] == "snet" and not setting["fallback"]:
                det.last_resort = None   # S-Net's search alone
            configure(det, setting)
            counts.update({24: 0, 48: 0})
            start = time.perf_counter()
            boxes = boxes_for(samples, "detector", det, colour)
            seconds = time.perf_counter() - start
            n = len(samples)
            rows[name] = {**{k: list(v) if isinstance(v, tuple) else v
                             for k, v in setting.items()},
                          "faces": n, "missed": sum(b is None for b in boxes),
                          "rnet_crops_per_image": counts[24] / n,
                          "onet_crops_per_image": counts[48] / n,
                          "ms_per_image": 1e3 * seconds / n}
            r = rows[name]
            print(f"{set_name}: {name}: missed {r['missed']} of {n}; R-Net "
                  f"{r['rnet_crops_per_image']:.1f}, O-Net {r['onet_crops_per_image']:.1f} crops "
                  f"per image; {r['ms_per_image']:.1f} ms per image", flush=True)
        report["sets"][set_name] = rows
    if args.json and args.only and args.json.is_file():   # a partial rerun: merge
        old = json.loads(args.json.read_text())
        for set_name, rows in report["sets"].items():
            old["sets"].setdefault(set_name, {}).update(rows)
        old.setdefault("reruns", []).append({"argv": report["argv"], "rows": list(settings),
                                             "default": report["default"]})
        old["default"] = report["default"]
        report = old
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(args.json)
    return 0


def configure(detector, setting: dict) -> None:
    """Apply a setting to every MTCNN and border wrapper inside a Detector's chain."""
    from tcdcn.detect import Padded
    from tcdcn.mtcnn import MTCNNDetector
    seen = set()

    def walk(node):
        if node is None or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, MTCNNDetector):
            node.lazy, node.nms = tuple(setting["lazy"]), tuple(setting["nms"])
            node.max_regression = setting["max_regression"]
            node.max_candidates = setting["max_candidates"]
            return
        if isinstance(node, Padded):
            node.retry_below = setting["retry_below"]
        for attr in ("detector", "turned_detector", "more_borders", "last_resort"):
            walk(getattr(node, attr, None))
        for inner in getattr(node, "detectors", ()):   # detect.FirstFound
            walk(inner)
    walk(detector)


if __name__ == "__main__":
    sys.exit(main())
