#!/usr/bin/env python3
"""Two released models on the first one's validation split, face by face: each model's NME,
the difference with a paired bootstrap interval (95%), and on how many faces the second is
the better. For choices on a small validation split (300-W's 121 faces).

  tools/compare_models.py models/tcdcn_68pt runs/p68_wing/model [--boxes landmarks] [--json OUT]
  tools/compare_models.py A0 B0 --also A1 B1 --also A2 B2 [--json OUT]

With --also, each further pair (two models trained on another split's training faces, e.g.
make_lmdb.py --seed 1) is measured on its own A's validation split too, and the verdict is
pooled: the mean of the per-split differences (splits weighted equally), a 95% interval from
resampling the faces within every split, and the spread of the per-split differences.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")   # before pycaffe loads

from tcdcn.evaluation.compare import paired_bootstrap, per_face_nme, pooled_bootstrap
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
    p.add_argument("--also", nargs=2, type=Path, action="append", default=[],
                   metavar=("A", "B"), help="another pair, on its own A's validation split")
    args = p.parse_args(argv)
    rows, seen = [], {}
    for a, b in [(args.a, args.b), *args.also]:
        _, val = validation_split(a, args.root)
        faces = tuple(sorted(str(s.image) for s in val))
        if faces in seen:
            p.error(f"{a} validates on the same faces as {seen[faces]}: pool pairs of "
                    "different splits (make_lmdb.py --seed)")
        seen[faces] = a
        nme = {m: per_face_nme(LandmarkModel(m), val, args.boxes) for m in (a, b)}
        result = paired_bootstrap(nme[a], nme[b])
        lo, hi = result["interval_95"]
        print(f"{len(val)} validation faces of {a}, {args.boxes} boxes")
        print(f"{a}: NME {nme[a].mean():.3f}%\n{b}: NME {nme[b].mean():.3f}%")
        print(f"difference (a - b) {result['mean_difference']:.2f} points, 95% interval "
              f"{lo:.2f} to {hi:.2f}; b better on {result['b_better_on']:.0%} of the faces")
        rows.append(({"a": str(a), "b": str(b), "boxes": args.boxes,
                      "nme_a": float(nme[a].mean()), "nme_b": float(nme[b].mean()), **result},
                     (nme[a], nme[b])))
    out = rows[0][0]
    if args.also:
        pooled = pooled_bootstrap([r[1] for r in rows])
        lo, hi = pooled["interval_95"]
        print(f"pooled over {pooled['splits']} splits ({sum(pooled['faces'])} faces): difference "
              f"{pooled['mean_difference']:.2f} points, 95% interval {lo:.2f} to {hi:.2f}; per "
              f"split {', '.join(f'{d:.2f}' for d in pooled['per_split'])} (sd "
              f"{pooled['spread_across_splits']:.2f}); b better on {pooled['b_better_on']:.0%} "
              "of the faces")
        out = {"pooled": pooled, "splits": [r[0] for r in rows]}
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
