#!/usr/bin/env python3
"""Export a model folder for stock OpenCV dnn (no custom layers) and check it against Caffe.

  tools/export_opencv.py --model models/tcdcn_5pt

Writes MODEL/deploy_opencv.prototxt and .caffemodel (LocallyConnected rewritten as
Convolution + Reshape, python/tcdcn/export.py), records them in model.json under
"files_opencv", and prints the largest difference between the two backends' outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from tcdcn.export import export_opencv
    from tcdcn.landmarks import LandmarkModel
    from tcdcn.models import record_hashes
    from tcdcn.paths import write_json
    prototxt = export_opencv(args.model, args.model)
    meta_path = args.model / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["files_opencv"] = {"deploy": prototxt.name, "weights": prototxt.with_suffix(".caffemodel").name}
    write_json(meta_path, meta)
    record_hashes(args.model, meta["files_opencv"].values())
    size = int(meta["input"]["size"])
    crops = np.random.default_rng(0).integers(0, 256, (16, 1, size, size)).astype(np.float32)
    a = LandmarkModel(args.model, backend="caffe").forward(crops)
    b = LandmarkModel(args.model, backend="opencv").forward(crops)
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    print(f"wrote {prototxt} (+ .caffemodel); max |caffe - opencv| on 16 random crops: {diff:.2e}")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
