"""Align every face of a photo collection: five points warped to a template, crops on disk,
one Parquet row per face (and per image without one), on this machine or a Ray cluster.

  tcdcn-align photos/ more.txt 'shots/**/*.jpg' --out aligned [--workers 2]
  tcdcn-align photos/ --out aligned --engine ray [--address ray://head:10001]
  (the same: tools/align.py ...)

Inputs: folders (searched), list files (.txt: a path a line), globs, images and videos
(every --video-step-th frame). OUT/crops/ holds the crops, OUT/faces.parquet the rows
(pyarrow.parquet.read_table), OUT/summary.json the counts and times. A killed run started
again with the same arguments finishes the unfinished shards only: every input ends up in
exactly one row set. Exit code 1 if any input failed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tcdcn.align.engines import ENGINES
from tcdcn.align.job import AlignSettings
from tcdcn.align.run import align
from tcdcn.align.template import TEMPLATES


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="folders, list files, globs, images, videos")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: a process pool here; ray: a Ray Data actor pool")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (local) or actors (ray), one Detector each")
    p.add_argument("--address", help="ray: the cluster to join (default: start a local one)")
    p.add_argument("--template", choices=sorted(TEMPLATES), default="arcface")
    p.add_argument("--size", type=int, help="crop width in pixels (default: the template's, "
                                            "112 for arcface)")
    p.add_argument("--model", default="tcdcn_5pt", help="bundled model name or model folder")
    p.add_argument("--backend", choices=("auto", "caffe", "onnx", "opencv"), default="auto")
    p.add_argument("--min-face", type=int, help="smallest face searched, in pixels")
    p.add_argument("--video-step", type=int, default=1, help="every Nth frame of a video")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg", help="crop files")
    p.add_argument("--shard-size", type=int, default=64,
                   help="inputs per shard (the unit that is redone after a kill)")
    p.add_argument("--restart", action="store_true",
                   help="discard OUT's earlier results and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print("error: tcdcn-align writes Parquet: pip install './python[align]' (pyarrow)",
              file=sys.stderr)
        return 1
    try:
        settings = AlignSettings(model=args.model, backend=args.backend,
                                 template=args.template, size=args.size,
                                 min_face=args.min_face, video_step=args.video_step,
                                 crop_format=args.format, shard_size=args.shard_size)
        summary = align(args.inputs, args.out, settings, args.engine, args.workers,
                        args.address, args.restart, progress=not args.quiet,
                        log=lambda m: print(m, file=sys.stderr))
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rate = summary["inputs_per_second"]
    print(f"{summary['inputs']} inputs: {summary['faces']} faces aligned, "
          f"{summary['no_face']} without a face, {summary['failed']} failed"
          + (f"; {rate} inputs/s this run" if rate else "")
          + f". Wrote {args.out / 'faces.parquet'}")
    return 1 if summary["failed"] or summary["skipped_inputs"] else 0


if __name__ == "__main__":
    sys.exit(main())
