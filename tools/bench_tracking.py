#!/usr/bin/env python3
"""Video tracking: when to re-detect. Frames with wrong points and time per frame for the
O-Net face check (every 5th frame, or every frame) against the uncertainty head's quality
score (Face.quality), on synthetic clips cut from validation faces (never the test set).

  tools/bench_tracking.py --model models/tcdcn_5pt [--faces 20] [--json OUT]

Each clip is 320x240: one face (a validation photo's face, 150 px, its points known) holds
still for 8 frames, then either slides out of the frame to the right ("leaves") or turns
in the image plane to 120 degrees ("turns"), 40 frames. A frame is wrong when the face is
mostly in view (>= 60%) and no face or points with NME over 10% are given for it, or when
it is mostly out of view (< 30%) and points are given anyway; frames in between are not
scored. Time per frame is the median over the clip's frames; each configuration runs in
this process on the same frames, the O-Net check every 5th frame (Tracker's default) being
the baseline of the ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tcdcn.api import Detector  # noqa: E402
from tcdcn.evaluation.metrics import point_errors  # noqa: E402
from tcdcn.geometry import apply_matrix  # noqa: E402
from tcdcn.image import load_image  # noqa: E402
from tcdcn.paths import data_root, write_json  # noqa: E402
from tcdcn.training.release import validation_split  # noqa: E402
from tcdcn.video.tracking import Tracker  # noqa: E402

W, H, SIDE = 320, 240, 150
STILL, MOVE = 8, 40


def face_patch(sample):
    """The face as a SIDE x SIDE BGR patch (1.6 box sides about the box centre) and its
    points in the patch."""
    image = load_image(sample.image)
    l, t, r, b = sample.box
    side = 1.6 * max(r - l, b - t)
    cx, cy = (l + r) / 2, (t + b) / 2
    s = SIDE / side
    m = np.array([[s, 0, SIDE / 2 - s * cx], [0, s, SIDE / 2 - s * cy]])
    patch = cv2.warpAffine(image, m, (SIDE, SIDE), borderMode=cv2.BORDER_REPLICATE)
    return patch, apply_matrix(m, sample.landmarks)


def clip(patch, points, motion: str):
    """Frames, the points in each and the fraction of the face in view."""
    frames, truth, visible = [], [], []
    x0, y0 = 40, (H - SIDE) // 2
    for k in range(STILL + MOVE):
        step = max(0, k - STILL)
        frame = np.full((H, W, 3), 110, np.uint8)
        if motion == "leaves":
            m = np.array([[1.0, 0, x0 + 7 * step], [0, 1, y0]])
        else:   # turns about the face centre, 3 degrees a frame
            c = (SIDE / 2, SIDE / 2)
            m = cv2.getRotationMatrix2D(c, -3.0 * step, 1.0)
            m[:, 2] += (x0, y0)
        cv2.warpAffine(patch, m, (W, H), dst=frame, borderMode=cv2.BORDER_TRANSPARENT)
        pts = apply_matrix(m, points)
        inside = ((pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H))
        frames.append(frame)
        truth.append(pts)
        visible.append(float(inside.mean()))
    return frames, truth, visible


def run_clip(tracker, frames, truth, visible, scheme) -> tuple[int, int, list[float]]:
    wrong = scored = 0
    times = []
    for frame, pts, vis in zip(frames, truth, visible):
        start = time.perf_counter()
        faces = tracker(frame)
        times.append(time.perf_counter() - start)
        if vis >= 0.6:
            scored += 1
            if not faces:
                wrong += 1
                continue
            err = [float(point_errors(f.landmarks[None], pts[None], scheme).mean()) for f in faces]
            wrong += min(err) > 0.10
        elif vis < 0.3:
            scored += 1
            wrong += bool(faces)
    return wrong, scored, times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/tcdcn_5pt"))
    p.add_argument("--root", type=Path, default=data_root())
    p.add_argument("--faces", type=int, default=20)
    p.add_argument("--min-quality", type=float, nargs="+", default=[0.3, 0.5])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    det = Detector(args.model)
    scheme = det.model.scheme
    _, val = validation_split(args.model, args.root)
    step = max(1, len(val) // args.faces)
    patches = [face_patch(s) for s in val[::step][:args.faces]]
    configs = {"onet_every_5": dict(check_every=5, min_quality=None),
               "onet_every_frame": dict(check_every=1, min_quality=None)}
    for q in args.min_quality:
        configs[f"quality_{q:g}"] = dict(min_quality=q, face_check=False)
        configs[f"quality_{q:g}_and_onet_every_5"] = dict(min_quality=q, check_every=5)
    results = {}
    for name, kw in configs.items():
        totals = {"wrong": 0, "scored": 0, "detections": 0, "frames": 0, "times": []}
        per_motion = {}
        for motion in ("leaves", "turns"):
            w = s = 0
            for patch, pts in patches:
                frames, truth, visible = clip(patch, pts, motion)
                tracker = Tracker(det, redetect_every=1000, **kw)
                wrong, scored, times = run_clip(tracker, frames, truth, visible, scheme)
                w, s = w + wrong, s + scored
                totals["detections"] += tracker.stats.detections
                totals["frames"] += tracker.stats.frames
                totals["times"] += times
            per_motion[motion] = {"wrong_frames": w, "scored_frames": s}
            totals["wrong"] += w
            totals["scored"] += s
        results[name] = {"wrong_frames": totals["wrong"], "scored_frames": totals["scored"],
                         "wrong_percent": 100 * totals["wrong"] / totals["scored"],
                         "by_motion": per_motion, "detections": totals["detections"],
                         "frames": totals["frames"],
                         "ms_per_frame_median": 1e3 * statistics.median(totals["times"]),
                         "ms_per_frame_mean": 1e3 * statistics.mean(totals["times"])}
    base = results["onet_every_5"]["ms_per_frame_mean"]
    print(f"{len(patches)} validation faces x 2 motions x {STILL + MOVE} frames ({args.model})")
    for name, r in results.items():
        r["mean_time_ratio_vs_onet_every_5"] = r["ms_per_frame_mean"] / base
        print(f"{name:32s} wrong {r['wrong_frames']:4d} of {r['scored_frames']} "
              f"({r['wrong_percent']:.1f}%; leaves {r['by_motion']['leaves']['wrong_frames']}, "
              f"turns {r['by_motion']['turns']['wrong_frames']})  detections "
              f"{r['detections']:4d}  ms/frame median {r['ms_per_frame_median']:.2f} mean "
              f"{r['ms_per_frame_mean']:.2f} ({r['mean_time_ratio_vs_onet_every_5']:.2f}x)")
    if args.json:
        write_json(args.json, {"model": str(args.model), "faces": len(patches),
                               "frames_per_clip": STILL + MOVE, "results": results,
                               "command": " ".join(["tools/bench_tracking.py"] +
                                                   (argv or sys.argv[1:]))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
