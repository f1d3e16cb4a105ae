#!/usr/bin/env python3
"""The turn retry (search.Turned: quarter turns, and tilts of 30 degrees) measured on
validation data only (never the test set): the numbers behind search.DEFAULT_TURNS' quarter
turns and its cost on face-free images (tools/mtcnn_recall.py measures the tilts on rolled
faces).

  tools/turn_check.py --json benchmarks/turn_check.json [--faces 300] [--tiles 10]

- Faces: every k-th face of 300-W (AFW + HELEN train) and of the non-frontal MTFL training
  faces that S-Net did not learn from (the validation sets of tools/mtcnn_recall.py:
  data.detector_sets.detector_validation_sets), each image turned by 0, 90, 180 and
  270 degrees (points turned with it), run end to end as Detector() runs them with the
  retry off and on: faces missed and NME (inter-ocular, found faces).
- Scores: MTCNN's best score (with Detector()'s borders) on those faces turned, at the
  turn that makes them upright and at the two others, and on the face-free images at each
  turn: the basis of search.TURN_MIN_SCORE.
- Face-free images: scikit-image's sample images without a face, whole and as random
  150x150 tiles: detections (false positives) and milliseconds per image, retry off and on
  (on such images every turn costs one more detection).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
from tcdcn.evaluation.turns import turn_check
from tcdcn.models import bundled
from tcdcn.paths import data_root, write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=data_root(),
                   help="data root (default $TCDCN_DATA or ../shared/data)")
    p.add_argument("--model", type=Path, default=bundled("tcdcn_5pt"))
    p.add_argument("--faces", type=int, default=300, help="faces per validation set (evenly spaced)")
    p.add_argument("--tiles", type=int, default=10, help="150x150 tiles per face-free image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    cv2.setNumThreads(1)
    report = {"tool": "tools/turn_check.py", "argv": argv if argv is not None else sys.argv[1:],
              **turn_check(args.model, args.root, args.faces, args.tiles, args.seed,
                           log=lambda line: print(line, flush=True))}
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
