"""Training S-Net: random inputs and targets from teacher-labelled images."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tcdcn.data.datasets import read_mtfl
from tcdcn.data.detector_sets import (
    FRAMED_POOL,
    HELD_OUT,
    ROLLED_POOL,
    framed_faces,
    validation_faces,
)
from tcdcn.detection.snet import (
    CHANNELS,
    FACE_RANGE,
    MEAN,
    N_REG,
    PRESHRINK,
    PROPOSAL_THRESHOLD,
    SCALE,
    STRIDE,
    SNetNet,
    encode,
    net_text,
)
from tcdcn.evaluation.recall import proposal_recall
from tcdcn.models import sha256_file
from tcdcn.paths import atomic_output, data_root, git_commit, write_json
from tcdcn.schemes import FIVE_POINT

POSITIVE = 0.95          # teacher faces scoring below this are neither face nor background


def label_row(image: int, kind: int, box, score: float, points) -> list[float]:
    """One teacher label (tools/snet_labels.py), the layout Sampler reads: image index, kind
    (1 a face, 0 a region to ignore), box (left, top, right, bottom), score, five points."""
    return [image, kind, *np.asarray(box, np.float64)[:4], score,
            *np.asarray(points, np.float64).reshape(10)]


MOSAIC = 0.3             # training inputs made of 2 x 2 or 3 x 3 views


class Sampler:
    """Random training inputs (size x size grey) and their targets from teacher-labelled
    images (tools/snet_labels.py): a face chosen and scaled to 12-64 px (so that the net
    sees faces in, around and outside its range), rolled within +-25 degrees, mirrored,
    placed anywhere; or a random view of a whole image; 30% of the inputs are mosaics of
    2 x 2 or 3 x 3 such views (MOSAIC). Inputs are `size` pixels square
    unless batch() is given another size (small inputs teach the net the image edges of
    the pyramid's small levels). Photometric jitter (_jitter: contrast, brightness and JPEG
    re-compression wider than the landmark model's augment.photometric, plus gamma, blur
    and noise)."""

    def __init__(self, images: list[np.ndarray], rows: np.ndarray, seed: int = 0,
                 size: int = 96):
        self.images, self.size = images, size
        self.rng = np.random.default_rng(seed)
        self.faces, self.ignore = [], []
        for i in range(len(images)):
            r = rows[rows[:, 0] == i]
            face = r[(r[:, 1] == 1) & (r[:, 6] >= POSITIVE)]
            ign = r[(r[:, 1] == 0) | ((r[:, 1] == 1) & (r[:, 6] < POSITIVE))]
            self.faces.append((_centre_side(face[:, 2:6]), face[:, 7:17].reshape(-1, 5, 2)))
            self.ignore.append(_centre_side(ign[:, 2:6]))

    def sample(self, size: int | None = None):
        """One training input (n x n grey) and its targets (encode())."""
        n = size or self.size
        if self.rng.random() < MOSAIC:
            # k x k views side by side: faces next to faces, as in group photos (without
            # this, a grid of faces read as one large face)
            k = int(self.rng.integers(2, 4))
            t = -(-n // k)
            out = np.zeros((k * t, k * t), np.uint8)
            faces, pts, ignore = [], [], []
            for r in range(k):
                for c in range(k):
                    view, f, p, ig = self._view(t, max_face=0.9 * t)
                    out[r * t:(r + 1) * t, c * t:(c + 1) * t] = view
                    shift = np.array([c * t, r * t], np.float64)
                    # faces centred outside their view are cut off by its edge: dropped
                    inside = np.all((f[:, :2] >= 0) & (f[:, :2] < t), axis=1)
                    faces.append(f[inside] + np.r_[shift, 0])
                    pts.append(p[inside] + shift)
                    ignore.append(ig[np.all((ig[:, :2] >= 0) & (ig[:, :2] < t), axis=1)]
                                  + np.r_[shift, 0])
            out = out[:n, :n]
            faces, pts, ignore = (np.concatenate(faces), np.concatenate(pts),
                                  np.concatenate(ignore))
        else:
            out, faces, pts, ignore = self._view(n)
        label, target, mask = encode(faces, pts, ignore, (n, n))
        return out, label, target, mask

    def _view(self, n: int, max_face: float = 64):
        """A random n x n view of a random image: (grey view, faces (centre x, y, side),
        their points, ignore regions), all in the view's pixels."""
        rng = self.rng
        i = int(rng.integers(len(self.images)))
        image = self.images[i]
        (faces, points), ignore = self.faces[i], self.ignore[i]
        if len(faces) and rng.random() < 0.8:
            f = faces[int(rng.integers(len(faces)))]
            top = max(min(64.0, max_face), 13.0)
            k = float(np.exp(rng.uniform(np.log(12), np.log(top)))) / f[2]
            centre, at = f[:2], rng.uniform(min(4, n / 4), n - min(4, n / 4), 2)
        else:
            k = float(np.exp(rng.uniform(np.log(48), np.log(300)))) / min(image.shape[:2])
            centre = rng.uniform(0, 1, 2) * image.shape[1::-1]
            at = rng.uniform(0, n, 2)
        angle = float(rng.uniform(-25, 25)) if rng.random() < 0.6 else 0.0
        pre = min(1.0, PRESHRINK * k)   # shrink with INTER_AREA first, as the pyramid does
        src = image if pre == 1.0 else cv2.resize(image, None, fx=pre, fy=pre,
                                                  interpolation=cv2.INTER_AREA)
        m = cv2.getRotationMatrix2D((float(centre[0] * pre), float(centre[1] * pre)), angle,
                                    k / pre)
        m[:, 2] += at - centre * pre
        flip = rng.random() < 0.5
        if flip:
            m[0] = -m[0]
            m[0, 2] += n - 1
        border = (dict(borderMode=cv2.BORDER_REPLICATE) if rng.random() < 0.7 else
                  dict(borderMode=cv2.BORDER_CONSTANT, borderValue=int(rng.integers(256))))
        out = cv2.warpAffine(src, m, (n, n), flags=cv2.INTER_LINEAR, **border)
        full = m.copy()
        full[:, :2] *= pre   # the map from the original image's pixels
        out = _jitter(out, rng)

        def moved(cs):
            c = cs[:, :2] @ full[:, :2].T + full[:, 2]
            return np.concatenate([c, cs[:, 2:3] * k], axis=1)
        pts = points @ full[:, :2].T + full[:, 2]
        if flip:
            pts = pts[:, FIVE_POINT.flip_permutation()]
        return out, moved(faces), pts.reshape(-1, 5, 2), moved(ignore)

    def batch(self, count: int, size: int | None = None):
        items = [self.sample(size) for _ in range(count)]
        data = np.stack([(it[0].astype(np.float32) - MEAN) * SCALE for it in items])[:, None]
        return data, *(np.stack([it[j] for it in items]) for j in (1, 2, 3))


def _centre_side(boxes: np.ndarray) -> np.ndarray:
    """(centre x, centre y, side of the enclosing square) of (left, top, right, bottom) boxes."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                     np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])], axis=1)


def _jitter(grey: np.ndarray, rng) -> np.ndarray:
    x = grey.astype(np.float32)
    x = x * rng.uniform(0.6, 1.4) + rng.uniform(-40, 40)
    if rng.random() < 0.3:
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.15:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:
        x = x + rng.normal(0, rng.uniform(1, 8), x.shape)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.2:
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        out = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
    return out


@dataclass
class SNetOptions:
    """tools/train_snet.py's options: teacher labels (tools/snet_labels.py), the run folder
    (resumable), the deploy model's folder (out, None: none), the solver, the input sizes
    (comma-separated, one drawn per batch), weights to start from (init: pruned where wider
    than `channels`), a teacher S-Net folder to distil from, and the validation of the
    written model (`val` held-out faces per set under `root`)."""

    labels: Path
    run: Path
    out: Path | None = None
    iters: int = 6000
    batch: int = 64
    lr: float = 0.002
    snapshot: int = 250
    seed: int = 0
    sizes: str = "96,96,64,48,32"
    init: Path | None = None
    teacher: Path | None = None
    channels: tuple = CHANNELS
    root: Path | None = None
    val: int = 1000
    command: str = ""


def train(opts: SNetOptions, log=print) -> None:
    """Train S-Net on the teacher labels (Adam, lr halved at 50% and 75% of the iterations,
    resumed from the run's latest snapshot), then write the deploy model where asked."""
    import caffe  # the patched pycaffe: only training needs it
    caffe.set_mode_cpu()
    caffe.set_random_seed(opts.seed)
    opts.run.mkdir(parents=True, exist_ok=True)
    lab = np.load(opts.labels)
    rows, paths = lab["rows"], lab["images"]
    images = []
    for k, path in enumerate(paths):
        im = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if im is None:
            raise ValueError(f"{path}: cannot read this image (listed in {opts.labels})")
        images.append(im)
    log(f"{len(images)} images, {int((rows[:, 1] == 1).sum())} teacher faces")
    train = opts.run / "train.prototxt"
    train.write_text(net_text(True, opts.batch, channels=opts.channels))
    steps = [int(opts.iters * 0.5), int(opts.iters * 0.75)]
    solver = opts.run / "solver.prototxt"
    solver.write_text(
        f'net: "{train.resolve()}"\nbase_lr: {opts.lr}\nlr_policy: "multistep"\ngamma: 0.5\n'
        + "".join(f"stepvalue: {s}\n" for s in steps)
        + f'type: "Adam"\nmomentum: 0.9\nmomentum2: 0.999\nweight_decay: 0.0001\n'
        f'max_iter: {opts.iters}\ndisplay: 0\nsnapshot: 0\n'
        f'snapshot_prefix: "{(opts.run / "snet").resolve()}"\nrandom_seed: {opts.seed}\n')
    s = caffe.get_solver(str(solver))
    states = sorted(opts.run.glob("snet_iter_*.solverstate"),
                    key=lambda q: int(q.stem.split("_")[-1]))
    if states:
        s.restore(str(states[-1]))
        log(f"resumed from {states[-1].name}")
    elif opts.init:
        if not opts.init.is_file():
            raise ValueError(f"{opts.init}: no such weights file (--init)")
        pruned = prune(s.net, opts.init)
        log(f"started from {opts.init}" + (f" (pruned: {', '.join(pruned)})" if pruned else ""))
    sizes = [int(v) for v in opts.sizes.split(",")]
    size_rng = np.random.default_rng([opts.seed, s.iter])
    sampler = Sampler(images, rows, seed=opts.seed + s.iter)
    log_path = opts.run / "log.jsonl"
    teacher = None
    if opts.teacher:
        for f in ("snet.prototxt", "snet.caffemodel"):
            if not (opts.teacher / f).is_file():
                raise ValueError(f"{opts.teacher / f}: no such file (--teacher)")
        teacher = caffe.Net(str(opts.teacher / "snet.prototxt"),
                            str(opts.teacher / "snet.caffemodel"), caffe.TEST)
    net = s.net
    start, losses = time.time(), []
    while s.iter < opts.iters:
        size = sizes[int(size_rng.integers(len(sizes)))]
        data, label, target, mask = sampler.batch(opts.batch, size)
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
            log(f"iter {s.iter}/{opts.iters}: score loss {sl:.4f}, regression loss {rl:.4f} "
                  f"({rate:.1f} it/s)")
            with open(log_path, "a") as f:
                f.write(json.dumps({"iter": s.iter, "score_loss": sl, "reg_loss": rl}) + "\n")
            start, losses = time.time(), []
        if s.iter % opts.snapshot == 0 or s.iter == opts.iters:
            s.snapshot()
            for old in sorted(opts.run.glob("snet_iter_*.solverstate"),
                              key=lambda q: int(q.stem.split("_")[-1]))[:-1]:
                old.unlink()
                old.with_suffix(".caffemodel").unlink(missing_ok=True)
    if opts.out:
        weights = opts.run / f"snet_iter_{opts.iters}.caffemodel"
        write_model(opts, weights, opts.out, log)




def teach(teacher, data):
    """Distillation targets for a batch: the teacher S-Net's face probability at every cell
    (soft labels for the sigmoid cross-entropy), its regression where that probability
    reaches snet.PROPOSAL_THRESHOLD (the cells that become proposals), masked elsewhere."""
    blob = teacher.blobs["data"]
    if blob.data.shape != data.shape:
        blob.reshape(*data.shape)
        teacher.reshape()
    blob.data[...] = data
    out = teacher.forward()
    prob = out["prob"].copy()
    mask = np.repeat((prob >= PROPOSAL_THRESHOLD).astype(np.float32), N_REG, axis=1)
    return prob, out["reg"] * mask, mask


# S-Net's layers in order; the last one feeds both heads
TRUNK, HEADS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6"), ("score", "reg")


def prune(net, weights: Path) -> list[str]:
    """Copy S-Net weights into `net`; where a layer of `weights` is wider than the net's,
    keep its channels with the largest product of the L1 norms of their filter and of the
    next layer's weights that read them (Li et al. 2017's filter norm, times how much the
    next layer uses the channel), in their original order. Returns the pruned layers
    ("conv3 32 -> 24", ...)."""
    from caffe.io import blobproto_to_array
    from caffe.proto import caffe_pb2
    if not weights.is_file():
        raise ValueError(f"{weights}: no such weights file (--init)")
    param = caffe_pb2.NetParameter()
    try:
        param.ParseFromString(weights.read_bytes())
    except Exception as err:  # noqa: BLE001 (protobuf raises its own DecodeError)
        raise ValueError(f"{weights}: not a Caffe weights file ({err})") from None
    src = {layer.name: [blobproto_to_array(b) for b in layer.blobs]
           for layer in param.layer if layer.blobs}
    missing = [n for n in TRUNK + HEADS if n not in src]
    if missing:
        raise ValueError(f"{weights}: not an S-Net (no layer {missing[0]})")
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
            raise ValueError(f"{weights}: layer {name} is {w.shape}, the net's "
                             f"{net.params[name][0].data.shape} (narrower than --channels?)")
        net.params[name][0].data[...] = w
        net.params[name][1].data[...] = b
    return pruned


def write_model(opts: SNetOptions, weights: Path, out: Path, log=print) -> None:
    """The deploy net and weights of a trained S-Net, and its model.json (with validate())."""
    import caffe
    out.mkdir(parents=True, exist_ok=True)
    deploy = out / "snet.prototxt"
    deploy.write_text(net_text(False, channels=opts.channels))
    trained = caffe.Net(str(opts.run / "train.prototxt"), str(weights), caffe.TEST)
    net = caffe.Net(str(deploy), caffe.TEST)
    for name in net.params:
        for a, b in zip(net.params[name], trained.params[name]):
            a.data[...] = b.data
    with atomic_output(out / "snet.caffemodel") as tmp:
        net.save(str(tmp))
    commit = git_commit(short=True, mark_dirty=False)
    meta = {"name": "snet", "input": "grey, (pixel - 127.5) / 128, any size",
            "stride": STRIDE, "face_range": list(FACE_RANGE),
            "channels": list(opts.channels), "iters": opts.iters, "batch": opts.batch,
            "lr": opts.lr, "sizes": opts.sizes, "init": str(opts.init or ""),
            "teacher": (f"S-Net {opts.teacher} (distilled: tools/train_snet.py --teacher), "
                        "on the inputs of MTCNN's labels (tools/snet_labels.py)" if opts.teacher
                        else "MTCNN (models/mtcnn), tools/snet_labels.py"),
            "training_faces": "MTFL training faces outside the detector validation sets "
                              f"(HELD_OUT = {HELD_OUT})",
            "command": opts.command, "commit": commit}
    meta["sha256"] = {f: sha256_file(out / f) for f in ("snet.caffemodel", "snet.prototxt")}
    meta["validation"] = validate(out, opts.root, opts.val, log)
    write_json(out / "model.json", meta)
    log(f"wrote {out}")


def validate(folder: Path, root, n: int, log=print) -> dict:
    """Proposal recall on the held-out MTFL faces of tools/mtcnn_recall.py's framed and
    rolled sets (n of each; none where the data is not at --root)."""
    listing = data_root(root) / "MTFL" / "training.txt"
    if n <= 0 or not listing.is_file():
        return {}
    framed, rolled = validation_faces(read_mtfl(listing, listing.parent),
                                           min(n, FRAMED_POOL), min(n, ROLLED_POOL))
    net = SNetNet(folder)
    out = {}
    for name, faces, roll in (("framed like AFLW", framed, 0.0),
                              ("framed and rolled +-60 degrees", rolled, 60.0)):
        samples, images = framed_faces(faces, max_roll=roll)
        out[name] = proposal_recall(net, samples, images)
        log(f"{name}: {out[name]}")
    return out
