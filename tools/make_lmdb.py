#!/usr/bin/env python3
"""Write shuffled, augmented multi-label LMDBs (train + validation) for the MultiLabelData layer.

  tools/make_lmdb.py --dataset mtfl --out lmdb/mtfl_1m --samples 1000000
  tools/make_lmdb.py --dataset facepoint --list LIST --root IMAGES --out OUT --samples N
  tools/make_lmdb.py --dataset 300w --root FOLDER --out OUT --samples N --size 60

Writes OUT/train_lmdb (N augmented samples, shuffled across the whole database),
OUT/val_lmdb (one plain crop per validation face), OUT/val_list.txt and OUT/manifest.json.
Everything is built beside OUT and renamed into place at the end: an interrupted run leaves
nothing at OUT. `--preview K` reads K records back and writes OUT/preview.png.
"""
from __future__ import annotations

import shlex
import signal
import sys

from tcdcn.data.augment import AugmentConfig
from tcdcn.data.datasets import DataError
from tcdcn.data.lmdb_build import (
    BuildConfig,
    build,
    check_lmdb_args,
    lmdb_parser,
    preview,
)
from tqdm import tqdm


def parse_args(argv):
    p = lmdb_parser(__doc__.split("\n\n")[0])
    p.epilog = __doc__.split("\n\n", 1)[1]
    args = p.parse_args(argv)
    check_lmdb_args(p, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = BuildConfig(dataset=args.dataset, root=args.root, out=args.out.resolve(),
                      samples=args.samples, list_path=args.list,
                      val_fraction=args.val_fraction, val_list=args.val_list, seed=args.seed,
                      workers=args.workers, size=args.size, channels=args.channels,
                      skip_bad=args.skip_bad, profile_weight=args.profile_weight,
                      augment=AugmentConfig().spread(args.spread), extra_300w=args.add_300w,
                      command=shlex.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])))
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        manifest = build(cfg, progress=lambda total: tqdm(total=total, unit="sample",
                                                           unit_scale=True, desc="augment+write"))
    except (DataError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: nothing was written to {cfg.out}", file=sys.stderr)
        return 130
    for d in manifest.get("removed_stale_temporaries", []):
        print(f"removed {d}, left by an earlier build that was killed", file=sys.stderr)
    c, t = manifest["counts"], manifest["timing"]
    print(f"train: {c['train_records']:,} records from {c['train_faces']:,} faces; "
          f"val: {c['val_records']:,} faces; skipped {manifest['skipped']['count']}")
    if c["val_records"] == 0:
        print("warning: no validation faces (--val-fraction 0): tools/train.py needs them to "
              "choose snapshots and stop stages", file=sys.stderr)
    mem = manifest["memory_mb"]
    print(f"{t['samples_per_s']:,.0f} samples/s with {t['workers']} workers; peak memory: "
          f"main {mem['main_peak_anonymous']:.0f} MB (+ LMDB file map), "
          f"worker {mem['worker_peak_rss']:.0f} MB")
    print(f"wrote {cfg.out}/ (manifest.json has the details)")
    if args.preview:
        print(f"wrote {preview(cfg.out, args.preview, args.size)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
