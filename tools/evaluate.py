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
import os
import sys
from pathlib import Path

from tcdcn.api import MAX_REFINE
from tcdcn.data.datasets import DataError, load_samples
from tcdcn.detection.factory import DetectorSettings
from tcdcn.evaluation.evaluate import evaluate, format_table, plot_ced
from tcdcn.landmarks import LandmarkModel
from tcdcn.paths import atomic_output, data_root, write_json


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


CROP_SCALES = (0.5, 3.0)   # crop sides in box sides a model can be asked for


def check_outputs(args) -> Path | None:
    """The CED plot's path (beside --json unless --ced names one), checked before the work:
    never the JSON report itself."""
    if args.json is None:
        return args.ced
    ced = args.ced or args.json.with_suffix(".png")
    if os.path.realpath(ced) == os.path.realpath(args.json):
        raise ValueError(f"--ced {ced} is the --json report's path: give them different files")
    return ced


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        if args.crop_scale is not None and not CROP_SCALES[0] <= args.crop_scale <= CROP_SCALES[1]:
            raise ValueError(f"--crop-scale must be from {CROP_SCALES[0]:g} to {CROP_SCALES[1]:g} "
                             f"box sides, not {args.crop_scale:g}")
        if args.refine is not None and not 0 <= args.refine <= MAX_REFINE:
            raise ValueError(f"--refine must be from 0 to {MAX_REFINE}, not {args.refine}")
        ced = check_outputs(args)
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
    except (DataError, FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    faces_from = list_path or args.root   # a list file, or the folder of .pts files searched
    report.update(model=str(args.model), dataset=args.dataset,
                  list=str(list_path) if list_path else None, root=str(args.root),
                  flip=model.flip, crop_scale=model.crop_scale,
                  command=" ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])))
    print(format_table(report))
    written = []
    try:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            written.append(write_json(args.json, report))
        if ced is not None:
            ced.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(ced, suffix=".png") as tmp:
                plot_ced({args.boxes: report}, tmp, f"{args.model.name} on {faces_from.name}")
            written.append(ced)
    except OSError as err:
        print(f"error: cannot write {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 1
    if written:
        print("wrote " + " and ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
