#!/usr/bin/env python3
"""Package a training run as a self-describing model folder, and measure it.

  tools/release_model.py --run RUN_DIR --out models/tcdcn_5pt

Writes OUT/deploy.prototxt, OUT/tcdcn_5pt.caffemodel and OUT/model.json (input size,
normalisation, landmark scheme, attribute names, detector calibration, the training
command, the commit and the measured numbers), plus OUT/ced_aflw.png. The Haar detector's
calibration is fitted on training faces only; the numbers come from the validation split
(list boxes) and the AFLW test set (landmark-derived and detector boxes).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
CROP_SCALES = (1.0, 1.05, 1.1, 1.15, 1.2)
REGRESSION_SLICE = "aflw_first_300_landmark_boxes"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--root", type=Path, default=Path(os.environ.get("TCDCN_DATA", "../shared/data")))
    p.add_argument("--calibration-faces", type=int, default=2000)
    p.add_argument("--mtcnn", type=Path, default=None,
                   help="MTCNN model folder (default: the bundled models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validation-only", action="store_true",
                   help="measure on the validation split only (ablations: never the test set)")
    return p.parse_args(argv)


def git_commit() -> str:
    """HEAD, marked +uncommitted when the code differs from it (the released models, which
    this tool itself writes, are not code)."""
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "python",
                            "tools", "layers", "caffe_patches", ":(exclude)python/tcdcn/models"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+uncommitted" if dirty else "")


def portable(text: str, run: Path, lmdb: Path, caffe_tool: Path) -> str:
    """Commands as a user would type them from the project root: the run and LMDB folders
    as runs/<name> and lmdb/<name>, the cached caffe binary as `caffe` (.venv/bin/caffe)."""
    return (text.replace(str(caffe_tool), "caffe")
                .replace(str(run.resolve()), f"runs/{run.resolve().name}")
                .replace(str(lmdb.resolve()), f"lmdb/{lmdb.resolve().name}")
                .replace(str(REPO) + "/", ""))


def started_from(init: str, depth: int = 0, run_commit: str | None = None) -> dict:
    """Where a run's first weights came from, followed back: another run (its command and
    stages, and where that one started) or a released model (its commit and training, as
    committed when the run started: the folder may hold a newer release by now)."""
    parent = Path(init).parent
    if (parent / "state.json").is_file() and depth < 10:     # continued from another run
        prev = json.loads((parent / "state.json").read_text())
        found = {"weights": init, "command": prev.get("train_command"),
                 "invocations": prev.get("invocations", []),
                 "lmdb_command": prev.get("lmdb_manifest", {}).get("command"),
                 "commit": prev.get("commit"),
                 "stages": {k: {kk: v[kk] for kk in ("best_iter", "best_measure", "measure")
                                if kk in v} for k, v in prev.get("stages", {}).items()}}
        if prev.get("init_weights"):
            found["started_from"] = started_from(prev["init_weights"], depth + 1,
                                                 prev.get("commit"))
        return found
    if (parent / "model.json").is_file():                     # from a released model
        prev = json.loads((parent / "model.json").read_text())
        try:
            rel = (parent.resolve() / "model.json").relative_to(REPO)
            shown = subprocess.run(["git", "-C", str(REPO), "show", f"{run_commit}:{rel}"],
                                   capture_output=True, text=True) if run_commit else None
            if shown is not None and shown.returncode == 0:
                prev = json.loads(shown.stdout)
        except ValueError:   # a model folder outside this checkout: as it is now
            pass
        return {"weights": init, "model": prev.get("name"), "commit": prev.get("commit"),
                "training": prev.get("training")}
    return {"weights": init}


def summary(report: dict) -> dict:
    keep = {k: v for k, v in report.items() if k not in ("ced",)}
    for a in keep.get("attributes", {}).values():
        a.pop("classes", None)
    return keep


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from tcdcn.detect import HaarDetector, fit_calibration  # noqa: F401
    from tcdcn.evaluation import evaluate, find_boxes, format_table, numbers_key, plot_ced
    from tcdcn.inference import LandmarkModel
    from tcdcn.lmdb_build import load_samples, split_by_group
    from tcdcn.net import INPUT_SIZE, NetOptions, deploy_net
    from tcdcn.schemes import SCHEMES, TASKS

    state = json.loads((args.run / "state.json").read_text())
    manifest = state["lmdb_manifest"]
    opts = NetOptions(**state["net_options"])
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    weights_name = f"tcdcn_{opts.scheme}.caffemodel"
    shutil.copyfile(args.run / "best.caffemodel", out / weights_name)
    (out / "deploy.prototxt").write_text(
        "# Generated by tools/release_model.py from python/tcdcn/net.py. Do not edit.\n"
        + str(deploy_net(opts)))

    # Faces of the training list, split exactly as make_lmdb split them.
    dataset = manifest["dataset"]
    samples, scheme, _ = load_samples(dataset, args.root)
    train, val = split_by_group(samples, manifest["split"]["val_fraction"], manifest["seed"])
    assert len(val) == manifest["counts"]["val_faces"], "the split does not reproduce"
    # validation boxes: the list's own (MTFL: CNN_FacePoint), else the scheme's landmark rule
    val_boxes = "list" if all(s.extra.get("box_from") == "list" for s in val) else "landmarks"
    val_key = f"validation_{val_boxes}_boxes"
    data_name = {"mtfl": "MTFL", "300w": "300-W (AFW + HELEN train)"}.get(dataset, dataset)

    calibrations = {}
    from tcdcn.mtcnn import bundled_models
    mtcnn_dir = args.mtcnn or bundled_models()
    if args.calibration_faces > 0:
        rng = np.random.default_rng(args.seed)
        pick = rng.choice(len(train), size=min(args.calibration_faces, len(train)), replace=False)
        fitted_on = (f"{len(pick)} {data_name} training faces "
                     f"({'CNN_FacePoint boxes' if val_boxes == 'list' else 'landmark-rule boxes'})")
        truth = [train[i].box for i in pick]
        calibrations["haar"] = fit_calibration(
            HaarDetector(), [cv2.imread(str(train[i].image), cv2.IMREAD_GRAYSCALE) for i in pick],
            truth, fitted_on=fitted_on).as_dict()
        from tcdcn.mtcnn import MTCNNDetector   # the default detector
        calibrations["mtcnn"] = fit_calibration(
            MTCNNDetector(mtcnn_dir), [cv2.imread(str(train[i].image)) for i in pick],
            truth, fitted_on=fitted_on).as_dict()
    stages = {k: {kk: v[kk] for kk in ("best_iter", "best_measure", "measure", "stopped_by_rule",
                                        "seconds") if kk in v}
              for k, v in state["stages"].items()}
    iters = sum(v.get("best_iter", 0) for v in state["stages"].values())
    batch = int(state.get("options", {}).get("batch", 256))   # runs before options: 256
    meta = {
        "name": f"tcdcn_{opts.scheme}",
        "description": ("TCDCN multi-task facial landmark + attribute model (ECCV 2014 layout)"
                        if opts.auxiliary else
                        f"TCDCN {scheme.count}-point facial landmark model (ECCV 2014 layout, "
                        "conv1-3 from the 5-point model)"),
        "files": {"deploy": "deploy.prototxt", "weights": weights_name},
        "input": {"size": INPUT_SIZE, "channels": 1, "colour": "grey (BGR converted with OpenCV)",
                  "pixel_range": "0..255, no scaling outside the net",
                  "normalisation": "per-image z-score inside the net (MVN layer)",
                  "crop": "square about the face box centre, side = box side (training box "
                          "convention: CNN_FacePoint boxes)"},
        "output": {"landmarks": "x1 y1 x2 y2 ... in crop units: (x_crop + 0.5) / 40",
                   "attributes": "<task>_prob blobs, softmax over the classes below"},
        "landmark_scheme": opts.scheme,
        "landmark_names": list(SCHEMES[opts.scheme].names),
        "flip_pairs": [list(pair) for pair in SCHEMES[opts.scheme].flip_pairs],
        "attributes": {t.name: list(t.classes) for t in TASKS} if opts.auxiliary else {},
        "net_options": opts.as_dict(),
        "detector_calibration": calibrations,
        "box_rule_for_faces_without_boxes": manifest["box_rule"],
        "training": {"command": state["train_command"], "stage_commands": state.get("commands", []),
                     "lmdb_command": manifest["command"], "lmdb_seed": manifest["seed"],
                     "train_records": manifest["counts"]["train_records"],
                     "train_faces": manifest["counts"]["train_faces"],
                     "val_faces": manifest["counts"]["val_faces"],
                     "stages": stages, "iterations_to_best": iters,
                     "init_weights": state.get("init_weights"),
                     "caps": state.get("caps", {}),
                     "invocations": state.get("invocations", []),
                     "samples_seen_to_best": iters * batch},
        "commit": git_commit(),
        "training_commit": state.get("commit", "not recorded (run started before train.py kept it)"),
        "licence": f"Trained on {data_name} (research use only; no commercial use or "
                   "redistribution of the data). The weights inherit those terms.",
    }
    if state.get("init_weights"):
        meta["training"]["started_from"] = started_from(state["init_weights"], 0,
                                                        state.get("commit"))
    from tcdcn.caffe_build import build_info
    tool = build_info().caffe_tool
    meta["training"] = json.loads(portable(json.dumps(meta["training"]), args.run,
                                           Path(state["lmdb"]), tool))
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    if (args.run / "curves.png").is_file():
        shutil.copyfile(args.run / "curves.png", out / "training_curves.png")
    (out / "training_log.json").write_text(portable(
        (args.run / "log.json").read_text(), args.run, Path(state["lmdb"]), tool))

    model = LandmarkModel(out)
    # Choices on the validation split only. First the crop's scale (training crops are
    # drawn at 0.9-1.4 box sides) and test-time flip averaging, on the validation list boxes.
    choices = []
    for flip in (False, True):
        for scale in CROP_SCALES:
            model.flip, model.crop_scale = flip, scale
            r = evaluate(model, val, val_boxes)
            choices.append({"flip": flip, "crop_scale": scale, "nme_mean": r["nme_mean"]})
            print(f"validation, crop scale {scale:.2f}, flip {'on ' if flip else 'off'}: "
                  f"NME {r['nme_mean']:.3f}%", flush=True)
    best = min(choices, key=lambda c: c["nme_mean"])
    model.flip, model.crop_scale = best["flip"], best["crop_scale"]
    meta["input"]["crop_scale"] = best["crop_scale"]
    convention = ("CNN_FacePoint boxes" if val_boxes == "list"
                  else "box_rule_for_faces_without_boxes applied to the points")
    meta["input"]["crop"] = (f"square about the face box centre, side = {best['crop_scale']:g} "
                             f"box sides (training box convention: {convention}); "
                             "pixels as augment.face_crop makes them")
    meta["test_time_flip"] = best["flip"]
    meta["inference_choices"] = {
        "rule": f"crop scale and flip averaging with the lowest validation NME ({val_boxes} boxes)",
        "tried": choices}
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    numbers = {val_key: evaluate(model, val, val_boxes)}
    # Detector crops and the re-centred second pass, chosen on validation: for MTCNN (the
    # default detector) crops from its calibrated box or from its five points through the
    # box rule, each with and without re-centring on the predicted points.
    refine, crop_from = 0, "box"
    if "mtcnn" in calibrations:   # no calibration, no meaningful detector numbers
        tried = {}
        for name, placement in (("haar", "box"), ("mtcnn", "box"), ("mtcnn", "points")):
            found = find_boxes(model, val, "detector", name, mtcnn_dir, crop_from=placement)
            for r in (0, 1):   # detect once, use twice
                key = numbers_key("validation", name, placement, r)
                numbers[key] = evaluate(model, val, "detector", name, mtcnn_dir, refine=r,
                                        boxes=found, crop_from=placement)
                if name == "mtcnn":
                    tried[(placement, r)] = numbers[key]["nme_mean"]
        crop_from, refine = min(tried, key=lambda k: tried[k])
        meta["detector_choices"] = {f"{p}, refine {r}": v for (p, r), v in tried.items()}
    meta["detector_crop"] = {"mtcnn": crop_from, "haar": "box"}
    meta["refine"] = refine
    meta["refine_rule"] = ("MTCNN's crop placement (calibrated box or five points) and the "
                           "second pass re-centred on the predicted points (refine 1) with the "
                           "lowest validation NME")
    model.meta.update(detector_crop=meta["detector_crop"])
    if args.validation_only:
        meta["numbers"] = {k: summary(v) for k, v in numbers.items()}
        (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(format_table(numbers[val_key]))
        return 0
    if dataset != "mtfl":   # no test set of this scheme here: validation numbers only
        meta["numbers"] = {k: summary(v) for k, v in numbers.items()}
        meta["numbers"]["note"] = (f"validation: held-out {data_name} faces, split by image "
                                   "(used to stop training and for every choice); the test "
                                   "faces are kept elsewhere")
        (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        for name, r in numbers.items():
            print(f"== {name}\n{format_table(r)}")
        print(f"wrote {out}/")
        return 0
    from tcdcn.datasets import read_mtfl
    aflw = read_mtfl(args.root / "MTFL" / "testing.txt", args.root / "MTFL")
    numbers["aflw_landmark_boxes"] = evaluate(model, aflw, "landmarks", refine=refine)
    # a fixed slice that tests/test_released_model.py re-measures (catches crop/coordinate bugs)
    numbers[REGRESSION_SLICE] = evaluate(model, aflw[:300], "landmarks", refine=refine)
    numbers["aflw_haar_boxes"] = evaluate(model, aflw, "detector", "haar", refine=refine,
                                          crop_from="box")
    # MTCNN: the chosen placement is the default; the others are reported, not chosen here
    for placement in ("box", "points"):
        found = find_boxes(model, aflw, "detector", "mtcnn", mtcnn_dir, crop_from=placement)
        for r in (0, 1):
            numbers[numbers_key("aflw", "mtcnn", placement, r)] = evaluate(
                model, aflw, "detector", "mtcnn", mtcnn_dir, refine=r, boxes=found,
                crop_from=placement)
    numbers["aflw_default_detector"] = numbers[numbers_key("aflw", "mtcnn", crop_from, refine)]
    for name, r in numbers.items():
        print(f"== {name}\n{format_table(r)}")
    plot_ced({"landmark-derived boxes": numbers["aflw_landmark_boxes"],
              "Haar detector boxes": numbers["aflw_haar_boxes"],
              "MTCNN (default)": numbers["aflw_default_detector"]},
             out / "ced_aflw.png", "AFLW test (MTFL testing.txt, 2,995 faces)")
    meta["numbers"] = {k: summary(v) for k, v in numbers.items()}
    meta["numbers"]["note"] = ("validation: held-out MTFL training faces (used to stop "
                               "training); AFLW: MTFL testing.txt, never used for choices")
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
