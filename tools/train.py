#!/usr/bin/env python3
"""Staged TCDCN training with `caffe train`, resumable after a kill.

  tools/train.py --lmdb LMDB_DIR --run RUN_DIR [--max-iter 20000 8000 8000]

LMDB_DIR is a tools/make_lmdb.py output (train_lmdb, val_lmdb, manifest.json). Each stage
runs as `caffe train -solver RUN_DIR/<stage>/solver.prototxt [-weights ...|-snapshot ...]`
(the exact commands are printed and kept in RUN_DIR/state.json, so they can be run by
hand). The orchestration is python/tcdcn/training/staged.py; the stopping rule
python/tcdcn/training/monitor.py. Rerunning the same command
continues from the last snapshot of the current stage. Writes RUN_DIR/log.json (every
training loss and validation output), RUN_DIR/curves.png and RUN_DIR/best.caffemodel.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path


def parse_args(argv):
    from tcdcn.training.net import INPUT_SIZE, NetOptions
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lmdb", type=Path, required=True, help="make_lmdb.py output folder")
    p.add_argument("--run", type=Path, required=True, help="run folder (created or resumed)")
    p.add_argument("--max-iter", type=int, nargs=3, default=(20000, 8000, 8000),
                   metavar=("MULTITASK", "LANDMARKS", "FINETUNE"), help="iteration caps")
    p.add_argument("--refit-heads", type=int, default=0, metavar="ITERS",
                   help="after finetuning, retrain the auxiliary heads alone on the frozen "
                        "final trunk for up to ITERS iterations (0: no)")
    p.add_argument("--test-interval", type=int, default=500)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--smooth", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=None,
                   help="base learning rate (default: net.SolverOptions, 0.03)")
    p.add_argument("--lr-policy", choices=("fixed", "poly"), default="fixed",
                   help="the finetune stage's rate: fixed, or poly (linear decay to 0 at its "
                        "cap); the other stages keep --lr fixed")
    p.add_argument("--width", type=float, default=1.0,
                   help="channel multiplier of the trunk (1.5, 2: wider nets)")
    p.add_argument("--seed", type=int, default=1)
    # switches for the ablations
    p.add_argument("--conv4", choices=("locally_connected", "convolution"),
                   default="locally_connected")
    p.add_argument("--activation", choices=("tanh", "abs_tanh", "linear"), default="tanh")
    p.add_argument("--aux-hidden", type=int, default=0, metavar="N",
                   help="auxiliary heads with a hidden layer of N units on conv4's output "
                        "(0, the default: linear heads on fc5, as the paper)")
    p.add_argument("--aux-branch", action="store_true",
                   help="with --aux-hidden: the auxiliary heads get their own conv4 on conv3's "
                        "output (trained with them: in the heads stage the trunk conv1-3 and "
                        "the landmark path stay frozen)")
    p.add_argument("--loss", choices=("euclidean", "wing"), default="euclidean",
                   help="the landmark loss (validation always reports the Euclidean one)")
    p.add_argument("--wing", type=float, nargs=2, metavar=("W", "EPSILON"),
                   default=(NetOptions.wing_w * INPUT_SIZE, NetOptions.wing_epsilon * INPUT_SIZE),
                   help="Wing loss w and epsilon in pixels of the 40-px input (default 6 1.25: "
                        "the paper's 10 and 2 on 64 px, scaled)")
    relu = p.add_mutually_exclusive_group()
    relu.add_argument("--relu-after-norm", action="store_true",
                      help="the write-up's ReLU right after the z-score (off by default)")
    relu.add_argument("--no-relu-after-norm", action="store_true",
                      help="no ReLU after the z-score (the default; kept for old commands)")
    p.add_argument("--landmarks-only", action="store_true",
                   help="no auxiliary tasks (implied by an LMDB without attribute labels)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--init-trunk", type=Path, metavar="MODEL",
                   help="start from the conv1-3 weights of a released model folder (or a "
                        ".caffemodel of the same trunk); conv4 on start freshly initialised "
                        "(the 68-point recipe)")
    start.add_argument("--init-weights", type=Path, metavar="CAFFEMODEL",
                       help="start the first stage from all of these weights (e.g. another "
                            "run's best.caffemodel, to train it longer)")
    p.add_argument("--uncertainty", choices=("laplace", "gaussian"),
                   help="a last stage: everything frozen, a per-coordinate log-scale head "
                        "(landmark_logscale) learns how far off each point is likely to be, "
                        "with this distribution's negative log-likelihood (needs "
                        "--uncertainty-iters)")
    p.add_argument("--uncertainty-iters", type=int, default=0, metavar="ITERS",
                   help="the uncertainty stage's cap")
    p.add_argument("--uncertainty-hidden", type=int, default=0, metavar="N",
                   help="the log-scale head with a hidden layer of N units on conv4's output "
                        "(0, the default: one fc on fc5)")
    p.add_argument("--stages", nargs="+",
                   choices=("multitask", "landmarks", "finetune", "heads", "uncertainty"),
                   help="run only these stages, in this order (e.g. finetune heads with "
                        "--init-weights); default: all that the options imply")
    p.add_argument("--landmark-lmdb", type=Path, metavar="LMDB_DIR",
                   help="with a mixed --lmdb (tools/mix_lmdb.py): the landmarks and finetune "
                        "stages read this dense-point LMDB (the one it was mixed from), the "
                        "multitask stage the mixed one")
    p.add_argument("--aux-in-finetune", action="store_true",
                   help="the finetune stage keeps every auxiliary task on (TCDCN's tasks "
                        "sharing the trunk while it trains; e.g. with a mixed --lmdb), its "
                        "weight decay 0 and rate schedule as usual")
    p.add_argument("--freeze-trunk", choices=("none", "first", "all"), default="none",
                   help="conv1-3 frozen in no stage, in the first stage only, or in all")
    p.add_argument("--trunk-lr-mult", type=float, default=1.0,
                   help="conv1-3's learning-rate multiplier where not frozen (default 1)")
    p.add_argument("--unstaged", action="store_true",
                   help="one multitask stage, stopped on the landmark loss")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for caffe (OMP_NUM_THREADS; default: all cores)")
    p.add_argument("--force", action="store_true",
                   help="continue a run folder although its recorded options differ")
    args = p.parse_args(argv)
    if args.stages and "heads" in args.stages and args.refit_heads <= 0:
        p.error("--stages heads needs --refit-heads ITERS (its cap)")
    if (args.uncertainty or (args.stages and "uncertainty" in args.stages)) \
            and (args.uncertainty_iters <= 0 or not args.uncertainty):
        p.error("the uncertainty stage needs --uncertainty laplace|gaussian and "
                "--uncertainty-iters ITERS (its cap)")
    if args.aux_in_finetune and args.landmark_lmdb:
        p.error("--aux-in-finetune needs the auxiliary labels in the finetune stage: not with "
                "--landmark-lmdb")
    if args.lr is None:
        from tcdcn.training.net import SolverOptions
        args.lr = SolverOptions().base_lr
    return args


def _terminate(signum, frame):
    raise KeyboardInterrupt   # the same path as Ctrl-C: caffe snapshots, the state is saved


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")   # pycaffe here; caffe train logs in full
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:   # started in the background
        signal.signal(signal.SIGINT, signal.default_int_handler)
    from tcdcn.training.staged import train
    return train(args, shlex.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])))


if __name__ == "__main__":
    sys.exit(main())
