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

import argparse
import json
import os
import shlex
import signal
import sys
from pathlib import Path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--dataset", choices=("mtfl", "facepoint", "300w"), required=True)
    p.add_argument("--root", type=Path,
                   default=Path(os.environ.get("TCDCN_DATA", "../shared/data")),
                   help="data root (default $TCDCN_DATA or ../shared/data); for facepoint "
                        "and 300w the folder the list's paths (or the .pts files) are under")
    p.add_argument("--list", type=Path, help="list file (mtfl: default MTFL/training.txt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    p.add_argument("--samples", type=int, required=True, help="augmented training samples")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of faces held out for validation, by person (default 0.1)")
    split.add_argument("--val-list", type=Path, help="file naming the validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--size", type=int, default=40, help="crop size in pixels (default 40)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1)
    p.add_argument("--profile-weight", type=int, default=1, metavar="W",
                   help="draw left/right profile faces W times as often (default 1)")
    p.add_argument("--spread", type=float, default=1.0, metavar="S",
                   help="geometric augmentation ranges (rotation, scale, shift) times S about "
                        "their centres (default 1: +-30 degrees, scale 0.9-1.4, shift 0.08)")
    p.add_argument("--add-300w", type=Path, metavar="FOLDER",
                   help="(5-point datasets) add the 300-W faces under FOLDER (or DATA_ROOT/300W) "
                        "to training, 5 points derived from their 68, attributes unlabelled")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad lines/images, count and list them in the manifest")
    p.add_argument("--preview", type=int, default=0, metavar="K",
                   help="write OUT/preview.png with K records read back")
    args = p.parse_args(argv)
    for name, low in (("samples", 1), ("workers", 1), ("size", 8), ("profile_weight", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low}, "
                    f"not {getattr(args, name)}")
    if args.val_list is None and not 0 <= args.val_fraction < 1:
        p.error(f"--val-fraction must be in [0, 1), not {args.val_fraction}")
    # fail before decoding thousands of faces, not after
    parent = args.out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        p.error(f"--out {args.out}: cannot write in {parent}")
    return args


def preview(out: Path, k: int, size: int) -> Path:
    """A contact sheet of the first k training records with their landmarks and labels."""
    import cv2
    import numpy as np
    from tcdcn.augment import denormalise
    from tcdcn.lmdb_io import decode_datum, read_lmdb
    from tcdcn.schemes import TASKS
    scale, tiles = 4, []
    for i, (_, value) in enumerate(read_lmdb(out / "train_lmdb")):
        if i >= k:
            break
        image, labels, _ = decode_datum(value)
        image = image.transpose(1, 2, 0)
        tile = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        if tile.ndim == 2 or tile.shape[2] == 1:
            tile = cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)
        manifest = json.loads((out / "manifest.json").read_text())
        n_points = manifest["label_layout"]["landmarks"][1] // 2
        # pixel centres scale as (u + 0.5) * scale - 0.5 under the nearest-neighbour zoom
        points = (denormalise(labels[:2 * n_points].reshape(-1, 2), size) + 0.5) * scale - 0.5
        for j, (x, y) in enumerate(points):
            colour = (0, 0, 255) if j % 2 == 0 else (0, 255, 0)
            cv2.circle(tile, (int(x), int(y)), 2, colour, -1)
        if len(labels) > 2 * n_points:
            text = " ".join(t.classes[int(v)][:4] for t, v in zip(TASKS, labels[2 * n_points:]))
            cv2.putText(tile, text, (2, tile.shape[0] - 4), cv2.FONT_HERSHEY_PLAIN, 0.7,
                        (255, 255, 0), 1)
        tiles.append(tile)
    cols = min(8, len(tiles))
    rows = [np.hstack(tiles[r:r + cols] + [np.zeros_like(tiles[0])] * (cols - len(tiles[r:r + cols])))
            for r in range(0, len(tiles), cols)]
    path = out / "preview.png"
    cv2.imwrite(str(path), np.vstack(rows))
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm
    from tcdcn.datasets import DataError
    from tcdcn.augment import AugmentConfig
    from tcdcn.lmdb_build import BuildConfig, build
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
