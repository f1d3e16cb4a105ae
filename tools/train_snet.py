#!/usr/bin/env python3
"""Train S-Net, the single-shot first stage of the default face detector (tcdcn.snet), on
teacher labels from tools/snet_labels.py, then write the deploy model.

  tools/train_snet.py --labels runs/snet/labels.npz --run runs/snet --iters 6000 \
      --out models/snet

Resumable: the solver state is snapshotted into --run every --snapshot iterations and the
latest one is restored on a restart. Adam, lr --lr halved at 50% and 75% of --iters.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--out", type=Path)
    p.add_argument("--iters", type=int, default=6000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--snapshot", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", default="96,96,64,48,32",
                   help="input sizes, one drawn per batch (small ones teach the image edges "
                        "of the pyramid's small levels)")
    p.add_argument("--init", type=Path,
                   help="weights to start from (a .caffemodel of S-Net's layers; where it is "
                        "wider than --channels, its most used channels are kept: prune())")
    p.add_argument("--teacher", type=Path, metavar="SNET",
                   help="an S-Net model folder to learn from instead of the labels' targets "
                        "(distillation): its face probability at every cell, its regression "
                        "where that reaches snet.PROPOSAL_THRESHOLD")
    p.add_argument("--channels",
                   help="widths of conv1, conv2, conv3 and conv4-6 (default: snet.CHANNELS)")
    p.add_argument("--root", type=Path, default=Path(os.environ.get("TCDCN_DATA", "../shared/data")),
                   help="data root, for the validation of the written model")
    p.add_argument("--val", type=int, default=1000,
                   help="held-out validation faces per set for model.json (0: none)")
    args = p.parse_args(argv)
    from tcdcn import snet
    try:
        args.channels = (tuple(int(c) for c in args.channels.split(",")) if args.channels
                         else snet.CHANNELS)
        if len(args.channels) != 4 or min(args.channels) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--channels: four positive widths, not {args.channels!r}")
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    import numpy as np
    import caffe
    caffe.set_mode_cpu()
    caffe.set_random_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)
    lab = np.load(args.labels)
    rows, paths = lab["rows"], lab["images"]
    images = []
    for k, path in enumerate(paths):
        im = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if im is None:
            raise SystemExit(f"{path}: cannot read this image (listed in {args.labels})")
        images.append(im)
    print(f"{len(images)} images, {int((rows[:, 1] == 1).sum())} teacher faces", flush=True)
    train = args.run / "train.prototxt"
    train.write_text(snet.net_text(True, args.batch, channels=args.channels))
    steps = [int(args.iters * 0.5), int(args.iters * 0.75)]
    solver = args.run / "solver.prototxt"
    solver.write_text(
        f'net: "{train.resolve()}"\nbase_lr: {args.lr}\nlr_policy: "multistep"\ngamma: 0.5\n'
        + "".join(f"stepvalue: {s}\n" for s in steps)
        + f'type: "Adam"\nmomentum: 0.9\nmomentum2: 0.999\nweight_decay: 0.0001\n'
        f'max_iter: {args.iters}\ndisplay: 0\nsnapshot: 0\n'
        f'snapshot_prefix: "{(args.run / "snet").resolve()}"\nrandom_seed: {args.seed}\n')
    s = caffe.get_solver(str(solver))
    states = sorted(args.run.glob("snet_iter_*.solverstate"),
                    key=lambda q: int(q.stem.split("_")[-1]))
    if states:
        s.restore(str(states[-1]))
        print(f"resumed from {states[-1].name}", flush=True)
    elif args.init:
        if not args.init.is_file():
            raise SystemExit(f"{args.init}: no such weights file (--init)")
        pruned = prune(s.net, args.init)
        print(f"started from {args.init}" + (f" (pruned: {', '.join(pruned)})" if pruned else ""),
              flush=True)
    sizes = [int(v) for v in args.sizes.split(",")]
    size_rng = np.random.default_rng([args.seed, s.iter])
    sampler = snet.Sampler(images, rows, seed=args.seed + s.iter)
    log = args.run / "log.jsonl"
    teacher = None
    if args.teacher:
        for f in ("snet.prototxt", "snet.caffemodel"):
            if not (args.teacher / f).is_file():
                raise SystemExit(f"{args.teacher / f}: no such file (--teacher)")
        teacher = caffe.Net(str(args.teacher / "snet.prototxt"),
                            str(args.teacher / "snet.caffemodel"), caffe.TEST)
    net = s.net
    start, losses = time.time(), []
    while s.iter < args.iters:
        size = sizes[int(size_rng.integers(len(sizes)))]
        data, label, target, mask = sampler.batch(args.batch, size)
        if teacher is not None:
            label, target, mask = teach(teacher, data)
        for name, blob in (("data", data), ("label", label), ("target", target),
                           ("mask", mask)):
            if net.blobs[name].data.shape != blob.shape:
                net.blobs[name].reshape(*blob.shape)
        net.blobs["data"].data[...] = data
        net.blobs["label"].data[...] = label
        net.blobs["target"].data[...] = target
        net.blobs["mask"].data[...] = mask
        s.step(1)
        losses.append((float(net.blobs["score_loss"].data), float(net.blobs["reg_loss"].data)))
        if s.iter % 50 == 0:
            sl, rl = np.mean(losses, axis=0)
            rate = len(losses) / (time.time() - start)
            print(f"iter {s.iter}/{args.iters}: score loss {sl:.4f}, regression loss {rl:.4f} "
                  f"({rate:.1f} it/s)", flush=True)
            with open(log, "a") as f:
                f.write(json.dumps({"iter": s.iter, "score_loss": sl, "reg_loss": rl}) + "\n")
            start, losses = time.time(), []
        if s.iter % args.snapshot == 0 or s.iter == args.iters:
            s.snapshot()
            for old in sorted(args.run.glob("snet_iter_*.solverstate"),
                              key=lambda q: int(q.stem.split("_")[-1]))[:-1]:
                old.unlink()
                old.with_suffix(".caffemodel").unlink(missing_ok=True)
    if args.out:
        weights = args.run / f"snet_iter_{args.iters}.caffemodel"
        write_model(args, weights, args.out)
    return 0


def teach(teacher, data):
    """Distillation targets for a batch: the teacher S-Net's face probability at every cell
    (soft labels for the sigmoid cross-entropy), its regression where that probability
    reaches snet.PROPOSAL_THRESHOLD (the cells that become proposals), masked elsewhere."""
    import numpy as np
    from tcdcn import snet
    blob = teacher.blobs["data"]
    if blob.data.shape != data.shape:
        blob.reshape(*data.shape)
        teacher.reshape()
    blob.data[...] = data
    out = teacher.forward()
    prob = out["prob"].copy()
    mask = np.repeat((prob >= snet.PROPOSAL_THRESHOLD).astype(np.float32), snet.N_REG, axis=1)
    return prob, out["reg"] * mask, mask


# S-Net's layers in order; the last one feeds both heads
TRUNK, HEADS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6"), ("score", "reg")


def prune(net, weights: Path) -> list[str]:
    """Copy S-Net weights into `net`; where a layer of `weights` is wider than the net's,
    keep its channels with the largest product of the L1 norms of their filter and of the
    next layer's weights that read them (Li et al. 2017's filter norm, times how much the
    next layer uses the channel), in their original order. Returns the pruned layers
    ("conv3 32 -> 24", ...)."""
    import numpy as np
    from caffe.io import blobproto_to_array
    from caffe.proto import caffe_pb2
    if not weights.is_file():
        raise SystemExit(f"{weights}: no such weights file (--init)")
    param = caffe_pb2.NetParameter()
    try:
        param.ParseFromString(weights.read_bytes())
    except Exception as err:  # noqa: BLE001 (protobuf raises its own DecodeError)
        raise SystemExit(f"{weights}: not a Caffe weights file ({err})") from None
    src = {layer.name: [blobproto_to_array(b) for b in layer.blobs]
           for layer in param.layer if layer.blobs}
    missing = [n for n in TRUNK + HEADS if n not in src]
    if missing:
        raise SystemExit(f"{weights}: not an S-Net (no layer {missing[0]})")
    pruned, kept_in = [], None   # kept_in: the previous layer's kept channels
    for i, name in enumerate(TRUNK + HEADS):
        w, b = src[name]
        if kept_in is not None:
            w = w[:, kept_in]
        n = net.params[name][0].data.shape[0]
        kept = np.arange(w.shape[0])
        if n < w.shape[0] and name in TRUNK:
            after = (np.concatenate([src[h][0] for h in HEADS]) if name == TRUNK[-1]
                     else src[TRUNK[i + 1]][0])
            use = np.abs(w).sum(axis=(1, 2, 3)) * np.abs(after).sum(axis=(0, 2, 3))
            kept = np.sort(np.argsort(-use, kind="stable")[:n])
            pruned.append(f"{name} {w.shape[0]} -> {n}")
        w, b = w[kept], b.reshape(-1)[kept]
        if name in TRUNK:   # both heads read the last trunk layer
            kept_in = kept
        if w.shape != net.params[name][0].data.shape:
            raise SystemExit(f"{weights}: layer {name} is {w.shape}, the net's "
                             f"{net.params[name][0].data.shape} (narrower than --channels?)")
        net.params[name][0].data[...] = w
        net.params[name][1].data[...] = b
    return pruned


def write_model(args, weights: Path, out: Path) -> None:
    import caffe
    from tcdcn import snet
    out.mkdir(parents=True, exist_ok=True)
    deploy = out / "snet.prototxt"
    deploy.write_text(snet.net_text(False, channels=args.channels))
    trained = caffe.Net(str(args.run / "train.prototxt"), str(weights), caffe.TEST)
    net = caffe.Net(str(deploy), caffe.TEST)
    for name in net.params:
        for a, b in zip(net.params[name], trained.params[name]):
            a.data[...] = b.data
    tmp = out / "snet.caffemodel.tmp"
    net.save(str(tmp))
    tmp.replace(out / "snet.caffemodel")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    meta = {"name": "snet", "input": "grey, (pixel - 127.5) / 128, any size",
            "stride": snet.STRIDE, "face_range": list(snet.FACE_RANGE),
            "channels": list(args.channels), "iters": args.iters, "batch": args.batch,
            "lr": args.lr, "sizes": args.sizes, "init": str(args.init or ""),
            "teacher": (f"S-Net {args.teacher} (distilled: tools/train_snet.py --teacher), "
                        "on the inputs of MTCNN's labels (tools/snet_labels.py)" if args.teacher
                        else "MTCNN (models/mtcnn), tools/snet_labels.py"),
            "training_faces": "MTFL training faces outside the detector validation sets "
                              f"(snet.HELD_OUT = {snet.HELD_OUT})",
            "command": "tools/train_snet.py " + " ".join(sys.argv[1:]), "commit": commit}
    meta["validation"] = validate(out, args.root, args.val)
    tmp = out / "model.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(out / "model.json")
    print(f"wrote {out}")


def validate(folder: Path, root, n: int) -> dict:
    """Proposal recall on the held-out MTFL faces of tools/mtcnn_recall.py's framed and
    rolled sets (n of each; none where the data is not at --root)."""
    from tcdcn import snet
    from tcdcn.datasets import read_mtfl
    from tcdcn.evaluation import framed_faces
    listing = Path(root or "../shared/data") / "MTFL" / "training.txt"
    if n <= 0 or not listing.is_file():
        return {}
    framed, rolled = snet.validation_faces(read_mtfl(listing, listing.parent),
                                           min(n, snet.FRAMED_POOL), min(n, snet.ROLLED_POOL))
    net = snet.SNetNet(folder)
    out = {}
    for name, faces, roll in (("framed like AFLW", framed, 0.0),
                              ("framed and rolled +-60 degrees", rolled, 60.0)):
        samples, images = framed_faces(faces, max_roll=roll)
        out[name] = snet.proposal_recall(net, samples, images)
        print(f"{name}: {out[name]}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
