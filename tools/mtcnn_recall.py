#!/usr/bin/env python3
"""MTCNN's recall and work on validation faces (never the test set), per cascade setting:
faces missed (no box, or none overlapping the face enough: evaluation.evaluate.boxes_for) and R-Net /
O-Net crops per image, as Detector() runs it (borders, turns). Every row keeps this
release's order (first border, then the turns, then the later borders), so the "before"
rows differ from the previous releases' defaults in that too. The numbers behind
mtcnn.LAZY, mtcnn.NMS, mtcnn.MAX_REGRESSION, mtcnn.MAX_CANDIDATES, mtcnn.LAST_RESORT,
search.DEFAULT_PADS / PAD_RETRY_BELOW, the tilts of search.DEFAULT_TURNS, S-Net's
proposals (snet.PROPOSAL_THRESHOLD, snet.MAX_PROPOSALS) and mtcnn.FALLBACK_MIN_FACE.

  tools/mtcnn_recall.py --json benchmarks/mtcnn_recall.json [--limit N] [--framed N] [--rolled N]
                        [--only ROW ...]

Sets: 300-W (AFW + HELEN train, ROOT/300W), the non-frontal MTFL training faces (pose
label other than frontal) that S-Net did not learn from (data.detector_sets.training_faces), N MTFL
training faces framed like the AFLW test images
(data.detector_sets.framed_faces: tight 150x150 crops), and N others framed so and rolled
uniformly within +-60 degrees, all outside the AFLW test set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
from tcdcn.evaluation.recall import SETTINGS, default_row, measure_recall, recall_sets
from tcdcn.landmarks import LandmarkModel
from tcdcn.models import bundled
from tcdcn.paths import data_root, write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=data_root(),
                   help="data root (default $TCDCN_DATA or ../shared/data)")
    p.add_argument("--model", type=Path, default=bundled("tcdcn_5pt"),
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
    cv2.setNumThreads(1)
    model = LandmarkModel(args.model)
    sets = recall_sets(args.root, args.framed, args.rolled)   # without S-Net's training faces
    report = {"tool": "tools/mtcnn_recall.py", "argv": argv if argv is not None else sys.argv[1:],
              "default": {k: list(v) if isinstance(v, tuple) else v
                          for k, v in default_row().items()},
              "sets": measure_recall(model, sets, settings, args.limit,
                                     log=lambda line: print(line, flush=True))}
    if args.json and args.only and args.json.is_file():   # a partial rerun: merge
        old = json.loads(args.json.read_text())
        for set_name, rows in report["sets"].items():
            old["sets"].setdefault(set_name, {}).update(rows)
        old.setdefault("reruns", []).append({"argv": report["argv"], "rows": list(settings),
                                             "default": report["default"]})
        old["default"] = report["default"]
        report = old
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
