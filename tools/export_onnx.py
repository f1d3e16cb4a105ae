#!/usr/bin/env python3
"""Export model folders to ONNX (for onnxruntime and OpenCV 5) and record the files, with
their sha256, in each model.json; prints each net's largest difference from our Caffe on
random inputs (needs this project's Caffe: tools/setup.sh). tcdcn.onnx_export does it.

  tools/export_onnx.py --bundled              # tcdcn_5pt, tcdcn_68pt, S-Net, MTCNN det1-3
  tools/export_onnx.py --model runs/my_model  # a landmark model folder (model.json)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
os.environ.setdefault("GLOG_minloglevel", "2")

from tcdcn.models import bundled  # noqa: E402
from tcdcn.onnx_export import (  # noqa: E402
    DETECTOR_NETS,
    export_detector_folder,
    export_model_folder,
)

TOLERANCE = 1e-4


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, action="append", default=[],
                   help="a landmark model folder (repeatable)")
    p.add_argument("--bundled", action="store_true", help="every bundled net")
    args = p.parse_args(argv)
    if not args.model and not args.bundled:
        p.error("name --model DIR or --bundled")
    worst = 0.0
    folders = list(args.model) + ([bundled("tcdcn_5pt"), bundled("tcdcn_68pt")] if args.bundled else [])
    for folder in folders:
        d = export_model_folder(folder)
        worst = max(worst, d)
        print(f"{folder}: ONNX written; max |onnx - caffe| on random crops {d:.2e}")
    for name in DETECTOR_NETS if args.bundled else ():
        d = export_detector_folder(bundled(name), name)
        worst = max(worst, d)
        print(f"{bundled(name)}: ONNX written; max |onnx - caffe| on random inputs {d:.2e}")
    return 0 if worst < TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
