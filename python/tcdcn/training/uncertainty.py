"""The per-point uncertainty head on a released model: attach the head an "uncertainty" stage
trained (tools/train.py --stages uncertainty), calibrate its scale on validation, measure how
well it ranks errors, and re-export the model's other backends.

The stage trains only `landmark_logscale`; every other weight of its snapshot must equal the
released model's, so the points and attributes (and every number measured on them) stay
exactly as released. attach() checks that on the weights and on the outputs.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from tcdcn.build.caffe_build import build_info
from tcdcn.data.datasets import read_mtfl
from tcdcn.detection.factory import DetectorSettings
from tcdcn.evaluation.evaluate import evaluate, find_boxes, load_images
from tcdcn.export import export_opencv
from tcdcn.landmarks import LandmarkModel
from tcdcn.models import load_caffe_net, read_model_json, record_hashes
from tcdcn.onnx_export import export_model_folder
from tcdcn.paths import atomic_output, git_commit, write_json
from tcdcn.training.net import NetOptions
from tcdcn.training.release import (
    deploy_text,
    portable,
    validation_boxes,
    validation_split,
)

CALIBRATION_RULE = ("one factor on the predicted scales: the validation split's mean NME over "
                    "its mean predicted NME (boxes from the list), so that predicted and "
                    "actual errors agree on average there")


def same_net(model_opts: dict, run_opts: dict) -> bool:
    """Whether a run's net is the model's, apart from the uncertainty head."""
    a = replace(NetOptions(**model_opts), uncertainty="", uncertainty_hidden=0, trunk_lr_mult=1.0)
    b = replace(NetOptions(**run_opts), uncertainty="", uncertainty_hidden=0, trunk_lr_mult=1.0)
    return a == b


def check_weights(model: Path, meta: dict, new_deploy: Path, new_weights: Path) -> int:
    """Every parameter of the released net equals the new weights' (bit for bit); returns
    how many blobs were compared. Raises ValueError naming the first that differs."""
    old = load_caffe_net(model / meta["files"]["deploy"], model / meta["files"]["weights"])
    new = load_caffe_net(new_deploy, new_weights)
    n = 0
    for name, blobs in old.params.items():
        for i, blob in enumerate(blobs):
            if not np.array_equal(blob.data, new.params[name][i].data):
                raise ValueError(f"{new_weights}: layer {name} (blob {i}) differs from the "
                                 f"released {meta['files']['weights']}: the uncertainty "
                                 "stage must leave every other weight as it was")
            n += 1
    if "landmark_logscale" not in new.params:
        raise ValueError(f"{new_weights} holds no landmark_logscale layer")
    return n


def fit_factor(model: LandmarkModel, val: list, boxes: str) -> tuple[float, dict]:
    """The calibration factor (mean NME / mean predicted NME on validation, at factor 1)
    and the validation report it came from."""
    model.uncertainty_factor = 1.0
    report = evaluate(model, val, boxes)
    u = report["uncertainty"]
    return u["mean_nme"] / u["mean_predicted_nme"], report


def measure(model: LandmarkModel, val: list, val_boxes: str, root: Path,
            aflw: bool = True) -> dict:
    """The uncertainty reports (Spearman, AUROC; no per-face rows) on validation and AFLW,
    with the data set's boxes and with the default detector."""
    default = DetectorSettings()
    sets = {f"validation_{val_boxes}_boxes": (val, val_boxes),
            "validation_default_detector": (val, "detector")}
    if aflw:
        test = read_mtfl(root / "MTFL" / "testing.txt", root / "MTFL")
        sets.update(aflw_landmark_boxes=(test, "landmarks"), aflw_default_detector=(test, "detector"))
    out = {}
    for key, (samples, boxes) in sets.items():
        r = evaluate(model, samples, boxes, default if boxes == "detector" else None,
                     refine=int(model.meta.get("refine", 0)) if boxes == "detector" else 0)
        out[key] = {**r["uncertainty"], "nme_mean": r["nme_mean"]}
    return out


def attach(model: Path, run: Path, root: Path, command: str, aflw: bool = True,
           out: Path | None = None) -> dict:
    """Give `model` (a released folder; or a copy at `out`) the uncertainty head of `run`,
    calibrated and measured; returns the new model.json."""
    model, run = Path(model), Path(run)
    if out is not None and Path(out).resolve() != model.resolve():
        if Path(out).exists():
            raise FileExistsError(f"{out} exists")
        shutil.copytree(model, out)
        model = Path(out)
    meta = read_model_json(model)
    state = json.loads((run / "state.json").read_text())
    stage = state.get("stages", {}).get("uncertainty", {})
    if not stage.get("done"):
        raise ValueError(f"{run}: no finished uncertainty stage (tools/train.py --stages "
                         "uncertainty)")
    if not same_net(meta["net_options"], state["net_options"]):
        raise ValueError(f"{run} trained another net than {model}'s (net_options differ)")
    opts = NetOptions(**{**meta["net_options"],
                         "uncertainty": state["net_options"]["uncertainty"],
                         "uncertainty_hidden": state["net_options"].get("uncertainty_hidden", 0)})
    weights = Path(stage["best_weights"])
    with tempfile.TemporaryDirectory() as tmp:
        deploy = Path(tmp) / "deploy.prototxt"
        deploy.write_text(deploy_text(opts))
        compared = check_weights(model, meta, deploy, weights)
        old = LandmarkModel(model, backend="caffe")
        dataset, val = validation_split(model, root)
        sample = val[:64]   # their crops as evaluate makes them
        images, _ = load_images(sample, False)
        boxes = find_boxes(old, sample, validation_boxes(val), images=images)
        crops = np.concatenate([old.crops(images[str(s.image)], np.array([b]))[0]
                                for s, b in zip(sample, boxes)])
        before = old.forward(crops)
        with atomic_output(model / meta["files"]["deploy"]) as t:
            shutil.copyfile(deploy, t)
    with atomic_output(model / meta["files"]["weights"]) as t:
        shutil.copyfile(weights, t)
    meta["net_options"] = opts.as_dict()
    meta["output"]["landmark_logscale"] = (
        f"ln b ({opts.uncertainty}) per coordinate, crop units: the API's Face.uncertainty "
        "(pixels) and Face.quality")
    meta["uncertainty_calibration"] = {"factor": 1.0}
    meta.pop("files_onnx", None)
    meta.pop("files_opencv", None)
    write_json(model / "model.json", meta)
    record_hashes(model, [meta["files"]["deploy"], meta["files"]["weights"]])
    new = LandmarkModel(model, backend="caffe")
    after = new.forward(crops)
    for k, v in before.items():   # the points and attributes are exactly the released ones
        if not np.array_equal(v, after[k]):
            raise ValueError(f"output {k} changed when the head was attached")
    factor, _ = fit_factor(new, val, validation_boxes(val))
    new.uncertainty_factor = factor
    numbers = measure(new, val, validation_boxes(val), root, aflw=aflw and dataset == "mtfl")
    meta = read_model_json(model)
    meta["uncertainty_calibration"] = {"factor": round(factor, 4), "rule": CALIBRATION_RULE}
    meta["uncertainty_numbers"] = numbers
    record = {
        "command": state["train_command"], "stage_commands": state.get("commands", []),
        "lmdb_command": state["lmdb_manifest"]["command"], "commit": state.get("commit"),
        "best_iter": stage["best_iter"], "best_measure": stage["best_measure"],
        "seconds": stage.get("seconds"), "weights_compared": compared}
    # commands as typed from the project root (runs/<name>, lmdb/<name>), as release's
    relative = lambda text: portable(text, run, Path(state["lmdb"]),  # noqa: E731
                                     build_info().caffe_tool)
    meta["training"]["uncertainty"] = json.loads(relative(json.dumps(record)))
    meta["uncertainty_command"] = relative(command)
    meta["uncertainty_commit"] = git_commit()
    write_json(model / "model.json", meta)
    # the other backends' files, exported again with the head
    prototxt = export_opencv(model, model)
    meta = read_model_json(model)
    meta["files_opencv"] = {"deploy": prototxt.name,
                            "weights": prototxt.with_suffix(".caffemodel").name}
    write_json(model / "model.json", meta)
    record_hashes(model, meta["files_opencv"].values())
    export_model_folder(model)
    return read_model_json(model)

