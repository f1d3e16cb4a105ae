#!/usr/bin/env python3
"""Two released models on the first one's validation split, face by face: each model's NME,
the difference with a paired bootstrap interval (95%), and on how many faces the second is
the better. For choices on a small validation split (300-W's 121 faces).

  tools/compare_models.py models/tcdcn_68pt runs/p68_wing/model [--boxes landmarks] [--json OUT]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")   # before pycaffe loads

from tcdcn.evaluation.compare import paired_bootstrap, per_face_nme
from tcdcn.landmarks import LandmarkModel
from tcdcn.paths import data_root, write_json
from tcdcn.training.release import validation_split


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="model folder (its validation split is used)")
    p.add_argument("b", type=Path, help="model folder to compare with it")
    p.add_argument("--boxes", choices=("landmarks", "list"), default="landmarks")
    p.add_argument("--root", type=Path, default=data_root(),
                   help="data root (default $TCDCN_DATA or ../shared/data)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    _, val = validation_split(args.a, args.root)
    nme = {m: per_face_nme(LandmarkModel(m), val, args.boxes) for m in (args.a, args.b)}
    result = paired_bootstrap(nme[args.a], nme[args.b])
    lo, hi = result["interval_95"]
    print(f"{len(val)} validation faces of {args.a}, {args.boxes} boxes")
    print(f"{args.a}: NME {nme[args.a].mean():.3f}%\n{args.b}: NME {nme[args.b].mean():.3f}%")
    print(f"difference (a - b) {result['mean_difference']:.2f} points, 95% interval "
          f"{lo:.2f} to {hi:.2f}; b better on {result['b_better_on']:.0%} of the faces")
    if args.json:
        write_json(args.json, {"a": str(args.a), "b": str(args.b), "boxes": args.boxes,
                               "nme_a": float(nme[args.a].mean()),
                               "nme_b": float(nme[args.b].mean()), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
