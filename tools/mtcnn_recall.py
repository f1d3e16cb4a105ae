#!/usr/bin/env python3
"""MTCNN's recall and work on validation faces (never the test set), per cascade setting:
faces missed (no box, or none overlapping the face enough: evaluation.boxes_for) and R-Net /
O-Net crops per image, as Detector() runs it (10% border, else 25%). The numbers behind
mtcnn.LAZY.

  tools/mtcnn_recall.py --json benchmarks/mtcnn_recall.json [--limit N]

Sets: 300-W (AFW + HELEN train, ROOT/300W) and the non-frontal MTFL training faces (pose
label other than frontal), both outside the AFLW test set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {"authors' cascade": (1.0, 1.0), "lazy O-Net (default)": None,
            "lazy R-Net and O-Net": (0.5, 0.3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(os.environ.get("TCDCN_DATA", "../shared/data")))
    p.add_argument("--model", type=Path, default=REPO / "models" / "tcdcn_5pt",
                   help="model whose MTCNN calibration is used (misses depend on it)")
    p.add_argument("--limit", type=int, default=0, help="faces per set (0: all)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    cv2.setNumThreads(1)
    import tcdcn.mtcnn as mtcnn
    from tcdcn.evaluation import boxes_for, detector_validation_sets, load_images, make_detector
    from tcdcn.inference import LandmarkModel
    model = LandmarkModel(args.model)
    sets = detector_validation_sets(args.root)
    counts = {24: 0, 48: 0}
    real = mtcnn._crops

    def counted(image, boxes, size):
        counts[size] += len(boxes)
        return real(image, boxes, size)

    mtcnn._crops = counted
    report = {"tool": "tools/mtcnn_recall.py", "argv": argv if argv is not None else sys.argv[1:],
              "default_lazy": list(mtcnn.LAZY), "sets": {}}
    for set_name, samples in sets.items():
        samples = samples[:args.limit] if args.limit else samples
        _, colour = load_images(samples, True)
        rows = {}
        for name, lazy in SETTINGS.items():
            det = make_detector(model, "mtcnn")
            inner = det.detector
            inner.lazy = tuple(mtcnn.LAZY if lazy is None else lazy)
            counts.update({24: 0, 48: 0})
            start = time.perf_counter()
            boxes = boxes_for(samples, "detector", det, colour)
            seconds = time.perf_counter() - start
            n = len(samples)
            rows[name] = {"lazy": list(inner.lazy), "faces": n,
                          "missed": sum(b is None for b in boxes),
                          "rnet_crops_per_image": counts[24] / n,
                          "onet_crops_per_image": counts[48] / n,
                          "ms_per_image": 1e3 * seconds / n}
            r = rows[name]
            print(f"{set_name}: {name} {tuple(r['lazy'])}: missed {r['missed']} of {n}; R-Net "
                  f"{r['rnet_crops_per_image']:.1f}, O-Net {r['onet_crops_per_image']:.1f} crops "
                  f"per image; {r['ms_per_image']:.1f} ms per image", flush=True)
        report["sets"][set_name] = rows
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
