#!/usr/bin/env python3
"""Export model folders to ONNX (for onnxruntime and OpenCV 5) and record the files, with
their sha256, in each model.json; prints each net's largest difference from our Caffe on
random inputs (needs this project's Caffe: tools/setup.sh).

  tools/export_onnx.py --bundled              # tcdcn_5pt, tcdcn_68pt, S-Net, MTCNN det1-3
  tools/export_onnx.py --model runs/my_model  # a landmark model folder (model.json)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402
from tcdcn.models import CaffeNet, OnnxNet, bundled, record_hashes  # noqa: E402
from tcdcn.onnx_export import export_onnx  # noqa: E402
from tcdcn.paths import write_json  # noqa: E402

# stem, input shape for the check, spatial dims dynamic (fully convolutional nets)
DETECTOR_NETS = {"snet": [("snet", (2, 1, 96, 120), True)],
                 "mtcnn": [("det1", (2, 3, 31, 45), True), ("det2", (4, 3, 24, 24), False),
                           ("det3", (4, 3, 48, 48), False)]}


def check(folder: Path, stem: str, shape, deploy: str, weights: str) -> float:
    x = np.random.default_rng(0).uniform(0 if shape[1] == 1 and stem != "snet" else -1, 1,
                                         shape).astype(np.float32)
    if stem.startswith("tcdcn"):
        x *= 255
    onnx_net = OnnxNet(folder / f"{stem}.onnx")
    caffe_net = CaffeNet(folder / deploy, folder / weights)
    names = [o.name for o in onnx_net.session.get_outputs()]
    onnx_net.setInput(x)
    caffe_net.setInput(x)
    return max(float(np.abs(a - b).max()) for a, b in zip(onnx_net.forward(names),
                                                         caffe_net.forward(names)))


def export_landmark_model(folder: Path) -> float:
    meta = json.loads((folder / "model.json").read_text())
    stem = Path(meta["files"]["weights"]).stem
    export_onnx(folder / meta["files"]["deploy"], folder / meta["files"]["weights"],
                folder / f"{stem}.onnx")
    meta["files_onnx"] = {"net": f"{stem}.onnx"}
    write_json(folder / "model.json", meta)
    record_hashes(folder, [f"{stem}.onnx"])
    size = int(meta["input"]["size"])
    return check(folder, stem, (4, 1, size, size), meta["files"]["deploy"],
                 meta["files"]["weights"])


def export_detector(name: str) -> float:
    folder = bundled(name)
    worst = 0.0
    for stem, shape, dynamic in DETECTOR_NETS[name]:
        export_onnx(folder / f"{stem}.prototxt", folder / f"{stem}.caffemodel",
                    folder / f"{stem}.onnx", spatial_dynamic=dynamic)
        worst = max(worst, check(folder, stem, shape, f"{stem}.prototxt", f"{stem}.caffemodel"))
    meta = json.loads((folder / "model.json").read_text())
    meta["files_onnx"] = {stem: f"{stem}.onnx" for stem, _, _ in DETECTOR_NETS[name]}
    write_json(folder / "model.json", meta)
    record_hashes(folder, meta["files_onnx"].values())
    return worst


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
        d = export_landmark_model(folder)
        worst = max(worst, d)
        print(f"{folder}: ONNX written; max |onnx - caffe| on random crops {d:.2e}")
    if args.bundled:
        for name in DETECTOR_NETS:
            d = export_detector(name)
            worst = max(worst, d)
            print(f"{bundled(name)}: ONNX written; max |onnx - caffe| on random inputs {d:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
