#!/usr/bin/env python3
"""The default Detector's faces on 600 validation images, at full precision, as JSON: run it
before and after a change that must not change behaviour, and compare the two files.

  tools/detector_faces.py --json before.json [--backend caffe|opencv]
  tools/detector_faces.py --json after.json --compare before.json

The images: 150 each of 300-W (AFW + HELEN train) and the non-frontal MTFL training faces
(data.detector_sets.detector_validation_sets), and 150 MTFL training faces framed like
AFLW's test images, upright and rolled within +-60 degrees (framed_faces); none of them is
a test face or one S-Net learnt from.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from tcdcn.api import Detector
from tcdcn.data.datasets import read_mtfl
from tcdcn.data.detector_sets import (
    detector_validation_sets,
    framed_faces,
    validation_faces,
)
from tcdcn.paths import data_root, write_json


def images(root: Path, per_set: int = 150) -> list[tuple[str, object]]:
    sets = list(detector_validation_sets(root).values())
    out = [(str(s.image), str(s.image)) for found in sets for s in found[:per_set]]
    train = read_mtfl(root / "MTFL" / "training.txt", root / "MTFL")
    for pool, roll in zip(validation_faces(train, per_set, per_set), (0.0, 60.0)):
        samples, crops = framed_faces(pool, max_roll=roll)
        out += [(str(s.image), crops[str(s.image)]) for s in samples]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--backend", default="auto")
    p.add_argument("--root", type=Path, default=data_root())
    p.add_argument("--compare", type=Path, help="an earlier file: exit 1 where any face differs")
    p.add_argument("--tolerance", type=float, default=0.0, metavar="PX",
                   help="with --compare: faces agree when their boxes and points are within "
                        "PX pixels and their attribute labels equal (default 0: identical)")
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    detector = Detector(backend=args.backend)
    faces = {key: [{"box": f.box.tolist(), "score": f.score, "landmarks": f.landmarks.tolist(),
                    "attributes": f.attributes, "turn": f.turn} for f in detector(image)]
             for key, image in images(args.root)}
    write_json(args.json, {"detector": detector.describe(), "faces": faces})
    print(f"{len(faces)} images, {sum(map(len, faces.values()))} faces: wrote {args.json}")
    if args.compare:
        before = json.loads(args.compare.read_text())["faces"]
        differ, worst = [], 0.0
        for k in set(before) | set(faces):
            a, b = before.get(k), faces.get(k)
            if args.tolerance == 0.0 or a is None or b is None or len(a) != len(b):
                if a != b:
                    differ.append(k)
                continue
            gap = max((max(np.abs(np.subtract(fa[f], fb[f])).max() for f in ("box", "landmarks"))
                       for fa, fb in zip(a, b)), default=0.0)
            labels = all({t: v[0] for t, v in fa["attributes"].items()}
                         == {t: v[0] for t, v in fb["attributes"].items()} for fa, fb in zip(a, b))
            worst = max(worst, float(gap))
            if gap > args.tolerance or not labels:
                differ.append(k)
        print(f"against {args.compare}: {len(differ)} of {len(faces)} images differ"
              + (f" (beyond {args.tolerance} px; largest gap elsewhere {worst:.4f} px)"
                 if args.tolerance else ""))
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
