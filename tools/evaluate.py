#!/usr/bin/env python3
"""Evaluate a model on a face list: NME, FR@10%, AUC@10%, per-landmark errors, CED, attributes.

  tools/evaluate.py --model models/tcdcn_5pt --dataset mtfl --boxes landmarks --json aflw.json
  tools/evaluate.py --model models/tcdcn_5pt --dataset mtfl --list LMDB/val_list.txt --boxes list

  tools/evaluate.py --model models/tcdcn_68pt --dataset 300w --list lmdb/300w_3m/val_list.txt
  tools/evaluate.py --model models/tcdcn_68pt --dataset 300w --root DIR --boxes detector

--dataset mtfl reads ROOT/MTFL/testing.txt (AFLW, 2,995 faces) unless --list names another
MTFL-format list (its faces get CNN_FacePoint boxes where those exist). --dataset 300w reads
every .pts face under ROOT/300W (or ROOT itself), or the images a --list file names. NME for
5 points is normalised by the distance between the eye centres; for 68 points by the outer
eye corners (points 36 and 45), with inter-pupil and per-region errors (jaw, brows, nose,
eyes, mouth) reported too. `--boxes landmarks` derives boxes from the true points with the
scheme's rule (the one training used, in model.json). Prints a table and writes the JSON
report and a CED PNG.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tcdcn.data.datasets import DataError, load_samples
from tcdcn.detection.factory import DetectorSettings
from tcdcn.evaluation.evaluate import evaluate, format_table, plot_ced
from tcdcn.landmarks import LandmarkModel
from tcdcn.paths import data_root


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model folder (model.json inside)")
    p.add_argument("--dataset", choices=("mtfl", "facepoint", "300w"), required=True)
    p.add_argument("--root", type=Path, default=data_root(),
                   help="data root (default $TCDCN_DATA or ../shared/data)")
    p.add_argument("--list", type=Path, help="list file (mtfl default: MTFL/testing.txt)")
    p.add_argument("--boxes", choices=("list", "detector", "landmarks"), default="landmarks")
    p.add_argument("--detector", choices=("mtcnn", "haar"), default="mtcnn")
    p.add_argument("--mtcnn", type=Path, help="folder with the MTCNN det1-3 models "
                                              "(default: the bundled ones)")
    p.add_argument("--crop-from", choices=("box", "points"),
                   help="MTCNN: crops from its calibrated box or its five points "
                        "(default: model.json's detector_crop)")
    p.add_argument("--detect-pad", type=float, nargs="+", default=None, metavar="FRACTION",
                   help="borders tried before detection, as Detector() does (default: 0.1, "
                        "else 0.25, else 0.5 while no face scored 0.9)")
    p.add_argument("--refine", type=int, default=None,
                   help="re-centre the crop on the predicted points and predict again, N times "
                        "(default: model.json's refine, chosen on validation)")
    p.add_argument("--flip", choices=("model", "on", "off"), default="model",
                   help="test-time flip averaging: as model.json says (default), on or off")
    p.add_argument("--crop-scale", type=float,
                   help="crop side in box sides (default: model.json's input.crop_scale)")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--ced", type=Path, help="CED plot (default: next to --json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        list_path = args.list
        if args.dataset == "mtfl" and list_path is None:
            list_path = args.root / "MTFL" / "testing.txt"
        samples, _, _ = load_samples(args.dataset, args.root, list_path)
        model = LandmarkModel(args.model)
        if args.flip != "model":
            model.flip = args.flip == "on"
        if args.crop_scale is not None:
            model.crop_scale = args.crop_scale
        if args.refine is None:
            args.refine = int(model.meta.get("refine", 0))
        settings = DetectorSettings(name=args.detector, mtcnn_dir=args.mtcnn,
                                    pad="auto" if args.detect_pad is None else args.detect_pad,
                                    crop_from=args.crop_from)
        report = evaluate(model, samples, args.boxes, settings, args.refine)
    except (DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    faces_from = list_path or args.root   # a list file, or the folder of .pts files searched
    report.update(model=str(args.model), dataset=args.dataset,
                  list=str(list_path) if list_path else None, root=str(args.root),
                  flip=model.flip, crop_scale=model.crop_scale,
                  command=" ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])))
    print(format_table(report))
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_name(args.json.name + ".tmp")
            tmp.write_text(json.dumps(report, indent=2) + "\n")
            os.replace(tmp, args.json)
        except OSError as err:
            print(f"error: cannot write {args.json}: {err.strerror}", file=sys.stderr)
            return 1
        ced = args.ced or args.json.with_suffix(".png")
        plot_ced({args.boxes: report}, ced, f"{args.model.name} on {faces_from.name}")
        print(f"wrote {args.json} and {ced}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
