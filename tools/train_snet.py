#!/usr/bin/env python3
"""Train S-Net, the single-shot first stage of the default face detector (tcdcn.detection.snet), on
teacher labels from tools/snet_labels.py, then write the deploy model.

  tools/train_snet.py --labels runs/snet/labels.npz --run runs/snet --iters 6000 \
      --out models/snet

Resumable: the solver state is snapshotted into --run every --snapshot iterations and the
latest one is restored on a restart. Adam, lr --lr halved at 50% and 75% of --iters.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tcdcn.detection.snet import CHANNELS
from tcdcn.paths import data_root
from tcdcn.training.snet import SNetOptions, train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--out", type=Path)
    p.add_argument("--iters", type=int, default=6000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--snapshot", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", default="96,96,64,48,32",
                   help="input sizes, one drawn per batch (small ones teach the image edges "
                        "of the pyramid's small levels)")
    p.add_argument("--init", type=Path,
                   help="weights to start from (a .caffemodel of S-Net's layers; where it is "
                        "wider than --channels, its most used channels are kept: prune())")
    p.add_argument("--teacher", type=Path, metavar="SNET",
                   help="an S-Net model folder to learn from instead of the labels' targets "
                        "(distillation): its face probability at every cell, its regression "
                        "where that reaches snet.PROPOSAL_THRESHOLD")
    p.add_argument("--channels",
                   help="widths of conv1, conv2, conv3 and conv4-6 (default: CHANNELS)")
    p.add_argument("--root", type=Path, default=data_root(),
                   help="data root, for the validation of the written model")
    p.add_argument("--val", type=int, default=1000,
                   help="held-out validation faces per set for model.json (0: none)")
    args = p.parse_args(argv)
    try:
        args.channels = (tuple(int(c) for c in args.channels.split(",")) if args.channels
                         else CHANNELS)
        if len(args.channels) != 4 or min(args.channels) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--channels: four positive widths, not {args.channels!r}")
    os.environ.setdefault("GLOG_minloglevel", "2")
    opts = SNetOptions(**vars(args), command="tools/train_snet.py " + " ".join(
        argv if argv is not None else sys.argv[1:]))
    try:
        train(opts, log=lambda line: print(line, flush=True))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
