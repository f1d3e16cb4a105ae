#!/usr/bin/env python3
"""One Detector shared by threads: images per second with a copy of every net per thread
(sharing="copies", the default) against one copy behind a lock (sharing="lock"), at 1 and
2 threads, on each backend. Medians of --repeats rounds, the configurations interleaved in
every round; ratios against copies at 1 thread, measured in the same process.

  tools/bench_threads.py --json benchmarks/bench_threads.json [--images 120] [--repeats 5]

Images: 150x150 crops of scikit-image's astronaut photo (one face; shifted, scaled,
mirrored and dimmed at random), the size of the AFLW test images.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from tcdcn.api import Detector
from tcdcn.models import default_backend
from tcdcn.paths import git_commit, write_json


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):   # the face is at about x 180-290, y 30-160
        side = int(rng.integers(170, 300))
        x0, y0 = int(rng.integers(max(0, 300 - side), 175)), int(rng.integers(max(0, 170 - side), 25))
        crop = cv2.resize(photo[y0:y0 + side, x0:x0 + side], (150, 150), interpolation=cv2.INTER_AREA)
        crop = crop[:, ::-1] if rng.random() < 0.5 else crop
        out.append(np.ascontiguousarray((crop * rng.uniform(0.7, 1.0)).astype(np.uint8)))
    return out


def rate(detector: Detector, pool: ThreadPoolExecutor, threads: int, batch: list) -> float:
    """Images per second, `threads` threads each taking every threads-th image."""
    start = time.perf_counter()
    list(pool.map(lambda k: [detector(im) for im in batch[k::threads]], range(threads)))
    return len(batch) / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=120)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--backends", nargs="+", default=None,
                   help="default: opencv, and caffe where this project's pycaffe imports")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    backends = args.backends or (["caffe", "opencv"] if default_backend() == "caffe" else ["opencv"])
    batch = images(args.images)
    configs = [(b, s, t) for b in backends for s in ("copies", "lock") for t in (1, 2)]
    detectors = {(b, s): Detector(backend=b, sharing=s) for b in backends for s in ("copies", "lock")}
    rates: dict = {c: [] for c in configs}
    with ThreadPoolExecutor(2) as pool:
        for c in configs:   # warm-up: every thread loads its copies
            rate(detectors[c[:2]], pool, c[2], batch[:8])
        for _ in range(args.repeats):
            for c in configs:
                rates[c].append(rate(detectors[c[:2]], pool, c[2], batch))
    rows = {}
    print(f"{'backend':8s} {'sharing':8s} threads  images/s (median of {args.repeats})  ratio")
    for b, s, t in configs:
        med = statistics.median(rates[(b, s, t)])
        base = statistics.median(rates[(b, "copies", 1)])
        rows[f"{b} {s} {t}"] = {"backend": b, "sharing": s, "threads": t, "images_per_s": med,
                                "rounds": rates[(b, s, t)], "vs_copies_1_thread": med / base}
        print(f"{b:8s} {s:8s} {t:7d}  {med:10.1f}  {med / base:5.2f}x")
    if args.json:
        report = {"tool": "tools/bench_threads.py", "argv": argv if argv is not None else sys.argv[1:],
                  "commit": git_commit(), "cores": os.cpu_count(), "images": args.images,
                  "rows": rows}
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
