#!/usr/bin/env python3
"""Teacher labels for the single-shot first stage (tcdcn.detection.snet): every face MTCNN finds
(min face 12 px, a 25% border) in the MTFL training images that the detector validation
sets leave out, with its box, score and five points. The annotated face of each image is
added as an "ignore" region where MTCNN missed it.

  tools/snet_labels.py --out runs/snet/labels.npz

Resumable: labels are written in chunks next to --out and joined at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tcdcn.paths import data_root

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=data_root())
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chunk", type=int, default=500)
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    import numpy as np
    cv2.setNumThreads(1)
    from tcdcn.data.detector_sets import training_faces
    from tcdcn.detection.base import iou_matrix
    from tcdcn.detection.mtcnn import MTCNNDetector
    from tcdcn.detection.search import Padded
    from tcdcn.image import load_image
    from tcdcn.training.snet import label_row
    samples = training_faces(args.root)
    det = Padded(MTCNNDetector(min_size=12), 0.25)
    parts = []
    for start in range(0, len(samples), args.chunk):
        part = args.out.with_name(f"{args.out.stem}.part{start // args.chunk:03d}.npz")
        parts.append(part)
        if part.exists():
            continue
        rows = []   # snet.label_row
        for i in range(start, min(start + args.chunk, len(samples))):
            s = samples[i]
            image = load_image(s.image)
            boxes, scores, pts = det.raw_points(image)
            for b, sc, pt in zip(boxes, scores, pts):
                rows.append(label_row(i, 1, b, sc, pt))
            gt = np.asarray(s.landmarks)
            lo, hi = gt.min(axis=0), gt.max(axis=0)
            c, side = (lo + hi) / 2, 2.2 * float((hi - lo).max())
            g = np.array([c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2])
            if not len(boxes) or iou_matrix(g, boxes).max() < 0.3:
                rows.append(label_row(i, 0, g, 0.0, np.zeros(10)))
        tmp = part.with_name(part.name + ".tmp.npz")
        np.savez(tmp, rows=np.asarray(rows, dtype=np.float64).reshape(-1, 17))
        tmp.replace(part)
        print(f"{min(start + args.chunk, len(samples))}/{len(samples)} images", flush=True)
    rows = np.concatenate([np.load(q)["rows"] for q in parts])
    images = np.array([str(s.image) for s in samples])
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez(tmp, rows=rows, images=images)
    tmp.replace(args.out)
    for q in parts:
        q.unlink()
    faces = rows[rows[:, 1] == 1]
    print(f"{len(samples)} images: {len(faces)} faces, {int((rows[:, 1] == 0).sum())} "
          f"annotated faces missed (ignored) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
