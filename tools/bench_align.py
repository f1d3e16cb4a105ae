#!/usr/bin/env python3
"""Throughput of tcdcn-align: images/s with 1 and 2 workers on each engine (local process
pool, Ray Data actors) over the same images, the scaling efficiency, Ray's cost against the
local engine, and the time per image of each stage (decode, detect, landmarks, warp, write).

  tools/bench_align.py [--images 2000] [--repeats 3] [--json benchmarks/bench_align.json]

The images are the first N of AFLW (MTFL/testing.txt; 150x150 face photos). Each
configuration runs `--repeats` times into a fresh output folder; the median wall time
counts, from the job's start (workers starting and loading their Detector included) to its
summary. Same process, same machine, one after another.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
os.environ.setdefault("GLOG_minloglevel", "2")

from tcdcn.align.job import STAGES, AlignSettings  # noqa: E402
from tcdcn.align.run import align, versions  # noqa: E402
from tcdcn.paths import data_root, git_commit, write_json  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--engines", nargs="+", default=["local", "ray"])
    p.add_argument("--backend", default="auto")
    p.add_argument("--root", type=Path, default=data_root())
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    lines = (args.root / "MTFL" / "testing.txt").read_text().split("\n")
    images = [args.root / "MTFL" / ln.split()[0].replace("\\", "/") for ln in lines if ln.strip()]
    images = images[:args.images]
    settings = AlignSettings(backend=args.backend, shard_size=50)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "images.txt"
        listing.write_text("".join(f"{p}\n" for p in images))
        for engine in args.engines:
            for workers in args.workers:
                runs = []
                for r in range(args.repeats):
                    out = Path(tmp) / f"{engine}{workers}_{r}"
                    t = time.perf_counter()
                    summary = align([str(listing)], out, settings, engine, workers,
                                    progress=False, log=lambda m: None)
                    runs.append((time.perf_counter() - t, summary))
                    shutil.rmtree(out)
                wall = statistics.median(w for w, _ in runs)
                summary = runs[0][1]
                per_stage = {k: 1000 * statistics.median(s["stage_seconds"][k] for _, s in runs)
                             / len(images) for k in STAGES}
                results.append({"engine": engine, "workers": workers, "images": len(images),
                                "walls_s": [round(w, 2) for w, _ in runs],
                                "median_wall_s": round(wall, 2),
                                "images_per_s": round(len(images) / wall, 1),
                                "faces": summary["faces"], "failed": summary["failed"],
                                "stage_ms_per_image": {k: round(v, 3) for k, v in per_stage.items()}})
                print(f"{engine:5s} {workers} worker(s): {len(images) / wall:7.1f} images/s "
                      f"(median of {[round(w, 1) for w, _ in runs]} s); per image "
                      + ", ".join(f"{k} {v:.2f} ms" for k, v in per_stage.items()), flush=True)
    by = {(r["engine"], r["workers"]): r for r in results}
    for r in results:
        one = by.get((r["engine"], 1))
        if one and r["workers"] > 1:
            r["scaling_efficiency"] = round(r["images_per_s"] / (r["workers"] * one["images_per_s"]), 3)
        local = by.get(("local", r["workers"]))
        if r["engine"] == "ray" and local:
            r["ray_over_local_time"] = round(r["median_wall_s"] / local["median_wall_s"], 3)
    for r in results:
        extra = "".join(f", {k} {r[k]}" for k in ("scaling_efficiency", "ray_over_local_time") if k in r)
        print(f"{r['engine']} x{r['workers']}: {r['images_per_s']} images/s{extra}")
    if args.json:
        write_json(args.json, {"tool": "tools/bench_align.py", "argv": argv if argv is not None
                               else sys.argv[1:], "commit": git_commit(short=True),
                               "cpu_count": os.cpu_count(), "versions": versions("ray" if "ray" in args.engines else "local"),
                               "results": results})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
