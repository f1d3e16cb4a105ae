#!/usr/bin/env python3
"""Inference speed (numbers printed, never asserted): ms per face for the landmark +
attribute net alone at batch 1 and batched, Caffe vs OpenCV backend, and end to end
(Haar detection + landmarks) on the demo image. Several runs, medians, one process.

  tools/bench_inference.py --model models/tcdcn_5pt [--threads 1] [--json OUT]
  tools/bench_inference.py --model models/tcdcn_68pt --baseline models/tcdcn_5pt --json OUT

Threads: OMP_NUM_THREADS (our Caffe's fast paths and its OpenMP OpenBLAS), set from
--threads (default 1) before Caffe loads; CAFFE_FAST_CPU=0 measures upstream's CPU loops.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def timed(fn, repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--baseline", type=Path,
                   help="another model folder timed the same way in this process (e.g. "
                        "models/tcdcn_5pt when --model is models/tcdcn_68pt): ratios printed")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    import numpy as np
    cv2.setNumThreads(1)
    from tcdcn.api import DEFAULT_MODEL, Detector
    from tcdcn.inference import LandmarkModel
    model_dir = args.model or DEFAULT_MODEL
    crops = np.random.default_rng(0).integers(0, 256, (1024, 1, 40, 40)).astype(np.float32)
    results = {"model": str(model_dir), "threads": args.threads, "opencv_threads": 1,
               "fast_cpu_paths": os.environ.get("CAFFE_FAST_CPU", "1") != "0"}
    for backend in ("caffe", "opencv"):
        m1 = LandmarkModel(model_dir, batch=1, backend=backend)
        mb = LandmarkModel(model_dir, batch=256, backend=backend)
        flip = mb.flip
        m1.flip = mb.flip = False     # one forward pass per face
        one = timed(lambda: m1.forward(crops[:100]), args.repeats) / 100
        many = timed(lambda: mb.forward(crops), args.repeats) / len(crops)
        mb.flip = True                # the model's test-time flip averaging: two passes
        many_flip = timed(lambda: mb.forward(crops), args.repeats) / len(crops)
        results[backend] = {"batch1_ms_per_face": one * 1e3, "batch256_ms_per_face": many * 1e3,
                            "batch256_faces_per_s": 1 / many,
                            "batch256_flip_ms_per_face": many_flip * 1e3,
                            "model_uses_flip": flip}
        print(f"{backend:6s} net only: batch 1 {one * 1e3:.3f} ms/face; batch 256 "
              f"{many * 1e3:.4f} ms/face = {1 / many:,.0f} faces/s; with flip averaging "
              f"{many_flip * 1e3:.4f} ms/face")
        if args.baseline:
            b1 = LandmarkModel(args.baseline, batch=1, backend=backend)
            bb = LandmarkModel(args.baseline, batch=256, backend=backend)
            b1.flip = bb.flip = False
            base_one = timed(lambda: b1.forward(crops[:100]), args.repeats) / 100
            base_many = timed(lambda: bb.forward(crops), args.repeats) / len(crops)
            results[backend]["baseline"] = {
                "model": str(args.baseline), "batch1_ms_per_face": base_one * 1e3,
                "batch256_ms_per_face": base_many * 1e3,
                "ratio_batch1": one / base_one, "ratio_batch256": many / base_many}
            print(f"{'':6s} baseline {args.baseline}: batch 1 {base_one * 1e3:.3f} ms/face "
                  f"(ratio {one / base_one:.2f}); batch 256 {base_many * 1e3:.4f} ms/face "
                  f"(ratio {many / base_many:.2f})")
    results["opencv_over_caffe_batch1"] = (results["opencv"]["batch1_ms_per_face"]
                                           / results["caffe"]["batch1_ms_per_face"])
    import skimage.data
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    det = Detector(model_dir, batch=1)
    faces = det(image)
    end_to_end = timed(lambda: det(image), args.repeats)
    detect_only = timed(lambda: det.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)), args.repeats)
    results["end_to_end"] = {"image": "skimage astronaut 512x512", "faces": len(faces),
                             "ms_per_image": end_to_end * 1e3, "detector_ms": detect_only * 1e3}
    print(f"end to end on a 512x512 image ({len(faces)} face): {end_to_end * 1e3:.1f} ms, of which "
          f"Haar detection {detect_only * 1e3:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
