#!/usr/bin/env python3
"""Give a released model the per-point uncertainty head an uncertainty stage trained, with
its scale calibrated on validation and its ranking of errors measured.

  tools/train.py --lmdb LMDB --run RUN --init-weights MODEL/WEIGHTS.caffemodel \\
      --stages uncertainty --uncertainty laplace --uncertainty-iters 4000 [MODEL's options]
  tools/attach_uncertainty.py --model models/tcdcn_5pt --run RUN [--out COPY]

Checks that every other weight is the released one (the points, attributes and their
numbers stay exactly as released), writes the weights, deploy.prototxt and model.json
(net_options.uncertainty, uncertainty_calibration, uncertainty_numbers: Spearman and the
AUROC for failures on validation and AFLW, with the data set's boxes and the default
detector; the training record), and exports the OpenCV and ONNX files again. The library
side is python/tcdcn/training/uncertainty.py.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
os.environ.setdefault("GLOG_minloglevel", "2")

from tcdcn.paths import data_root  # noqa: E402
from tcdcn.training.uncertainty import attach  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="released model folder")
    p.add_argument("--run", type=Path, required=True, help="run folder of the uncertainty stage")
    p.add_argument("--out", type=Path, help="write a copy of the model here instead")
    p.add_argument("--root", type=Path, default=data_root(),
                   help="data root (default $TCDCN_DATA or ../shared/data)")
    p.add_argument("--validation-only", action="store_true",
                   help="measure on the validation split only (choices: never the test set)")
    args = p.parse_args(argv)
    command = shlex.join(["tools/attach_uncertainty.py"] + (argv if argv is not None
                                                            else sys.argv[1:]))
    try:
        meta = attach(args.model, args.run, args.root, command, aflw=not args.validation_only,
                      out=args.out)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"calibration factor {meta['uncertainty_calibration']['factor']}")
    for key, u in meta["uncertainty_numbers"].items():
        num = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{key:32s} NME {u['nme_mean']:.2f}%  predicted {u['mean_predicted_nme']:.2f}%  "
              f"Spearman face {num(u['spearman_face'])} point {num(u['spearman_point'])}  "
              f"AUROC failures {num(u['auroc_failures'])} ({u['n_failures']} of {u['n_faces']}); "
              f"NME > 5% {num(u['auroc_over_5'])} ({u['n_over_5']})")
    print(f"wrote {args.out or args.model}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
