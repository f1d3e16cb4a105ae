#!/usr/bin/env python3
"""End-to-end check of the patched Caffe on synthetic data: no face data or model needed.

Writes a shuffled multi-label LMDB of dot images, trains a small multi-task net that uses
both new layers with `caffe train -solver ...` (the exact command is printed), runs the
trained model through pycaffe on held-out images, and writes:
  OUT/demo.png   held-out images with true (green) and predicted (red) points
  OUT/demo.json  the measured point error and class accuracy, and the commands
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("synthetic_out"), help="output folder")
    p.add_argument("--train", type=int, default=4096, help="training images")
    p.add_argument("--test", type=int, default=256, help="held-out images")
    p.add_argument("--iters", type=int, default=1500, help="solver iterations")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def train(caffe_tool: Path, solver: Path, iters: int, log: Path) -> list[tuple[int, float]]:
    """Run `caffe train`, showing a progress bar; returns (iteration, loss) pairs."""
    from tqdm import tqdm
    cmd = [str(caffe_tool), "train", "-solver", str(solver)]
    print("$ " + " ".join(cmd))
    losses = []
    with open(log, "w") as log_file, tqdm(total=iters, unit="iter", desc="caffe train") as bar:
        env = {**os.environ, "GLOG_minloglevel": "0"}  # the loss is logged at INFO
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=log_file, text=True, env=env)
        for line in proc.stderr:
            log_file.write(line)
            found = re.search(r"Iteration (\d+).*, loss = ([0-9.e+-]+)", line)
            if found:
                it, loss = int(found.group(1)), float(found.group(2))
                losses.append((it, loss))
                bar.update(it - bar.n)
                bar.set_postfix(loss=f"{loss:.4f}")
        if proc.wait() != 0:
            raise SystemExit(f"caffe train failed; see {log}")
        bar.update(iters - bar.n)
    return losses


def contact_sheet(images, true_pts, pred_pts, size: int, path: Path, cols: int = 8) -> None:
    import cv2
    scale = 8
    tiles = []
    for img, t, p in zip(images, true_pts, pred_pts):
        tile = cv2.resize(img[0], (size * scale, size * scale), interpolation=cv2.INTER_NEAREST)
        tile = cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)
        for pts, colour in ((t, (0, 200, 0)), (p, (0, 0, 255))):
            centre = tuple(int(round(v * size * scale)) for v in pts)
            cv2.circle(tile, centre, 5, colour, 2)
        tiles.append(tile)
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles) - cols + 1, cols)]
    cv2.imwrite(str(path), np.vstack(rows))


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "1")
    import caffe
    from tcdcn.build.caffe_build import build_info
    from tcdcn.data.lmdb_io import encode_datum, write_lmdb
    from tcdcn.data.synthetic import dot_images, dot_net

    size, batch = 16, 64
    out = args.out.resolve()
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    images, points, classes = dot_images(args.train + args.test, size=size, rng=rng)
    labels = np.concatenate([points, classes[:, None].astype(np.float32)], axis=1)
    order = rng.permutation(args.train)  # shuffled when written
    n = write_lmdb(work / "train_lmdb", (encode_datum(images[i], labels[i]) for i in order))
    print(f"wrote {n} shuffled records to {work / 'train_lmdb'}")

    (work / "train.prototxt").write_text(str(dot_net(str(work / "train_lmdb"), batch, size)))
    (work / "deploy.prototxt").write_text(str(dot_net(None, args.test, size)))
    (work / "solver.prototxt").write_text(f"""net: "{work / 'train.prototxt'}"
base_lr: 0.02
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
max_iter: {args.iters}
display: 50
snapshot: {args.iters}
snapshot_prefix: "{work / 'dots'}"
solver_mode: CPU
random_seed: {args.seed}
""")
    build = build_info()
    losses = train(build.caffe_tool, work / "solver.prototxt", args.iters, work / "train.log")
    weights = work / f"dots_iter_{args.iters}.caffemodel"

    caffe.set_mode_cpu()
    net = caffe.Net(str(work / "deploy.prototxt"), caffe.TEST, weights=str(weights))
    test = slice(args.train, args.train + args.test)
    net.blobs["data"].data[...] = images[test]
    result = net.forward()
    pred = result["pred"].copy()
    err_px = np.linalg.norm((pred - points[test]) * size, axis=1)
    accuracy = float(np.mean(result["prob"].argmax(axis=1) == classes[test]))
    contact_sheet(images[test][:32], points[test][:32], pred[:32], size, out / "demo.png")

    report = {
        "what": "synthetic end-to-end check: dot images, multi-task net with "
                "LocallyConnected + MultiLabelData, trained with caffe train",
        "train_images": args.train, "test_images": args.test, "iterations": args.iters,
        "seed": args.seed, "caffe_build": build.key,
        "first_loss": losses[0][1] if losses else None,
        "last_loss": losses[-1][1] if losses else None,
        "point_error_px": {"mean": float(err_px.mean()), "median": float(np.median(err_px))},
        "dot_radius_px": 1.5, "image_px": size,
        "class_accuracy": accuracy,
        "train_command": f"{build.caffe_tool} train -solver {work / 'solver.prototxt'}",
    }
    (out / "demo.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"held-out point error: mean {err_px.mean():.2f} px, median {np.median(err_px):.2f} px "
          f"(image {size}x{size}); left/right accuracy {accuracy:.1%}")
    print(f"wrote {out / 'demo.png'} and {out / 'demo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
