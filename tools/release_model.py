#!/usr/bin/env python3
"""Package a training run as a self-describing model folder, and measure it.

  tools/release_model.py --run RUN_DIR --out models/tcdcn_5pt
  tools/release_model.py --refresh-deploy models/tcdcn_5pt
  tools/release_model.py --remeasure models/tcdcn_5pt

--remeasure measures a released model's numbers again (validation with each detector, the
crop placement chosen on them, AFLW) after a change to the default detector, without the
training run: the validation split is rebuilt from model.json.

--refresh-deploy rewrites a released model's deploy.prototxt from python/tcdcn/training/net.py (for
changes that keep the function, such as a layer order) and fails unless its outputs equal
the old file's on random and flipped crops; then rerun tools/export_opencv.py.

Writes OUT/deploy.prototxt, OUT/tcdcn_5pt.caffemodel and OUT/model.json (input size,
normalisation, landmark scheme, attribute names, detector calibration, the training
command, the commit and the measured numbers), plus OUT/ced_aflw.png. The Haar detector's
calibration is fitted on training faces only; the numbers come from the validation split
(list boxes) and the AFLW test set (landmark-derived and detector boxes).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tcdcn.paths import data_root
from tcdcn.training.release import refresh_deploy, release, remeasure


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--refresh-deploy", type=Path, metavar="MODEL",
                   help="only rewrite MODEL/deploy.prototxt from net.py, checked to compute "
                        "the same outputs")
    p.add_argument("--remeasure", type=Path, metavar="MODEL",
                   help="measure a released model's numbers again with this release's "
                        "detectors, without its training run")
    p.add_argument("--root", type=Path, default=data_root(),
                   help="data root (default $TCDCN_DATA or ../shared/data)")
    p.add_argument("--calibration-faces", type=int, default=2000)
    p.add_argument("--mtcnn", type=Path, default=None,
                   help="MTCNN model folder (default: the bundled models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validation-only", action="store_true",
                   help="measure on the validation split only (ablations: never the test set)")
    args = p.parse_args(argv)
    if (args.refresh_deploy is None and args.remeasure is None
            and (args.run is None or args.out is None)):
        p.error("--run and --out are required (or --refresh-deploy MODEL, --remeasure MODEL)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    if args.refresh_deploy is not None:
        return refresh_deploy(args.refresh_deploy)
    if args.remeasure is not None:
        return remeasure(args.remeasure, args.root, args.mtcnn)
    return release(args.run, args.out, args.root, args.calibration_faces, args.mtcnn,
                   args.seed, args.validation_only)


if __name__ == "__main__":
    sys.exit(main())
