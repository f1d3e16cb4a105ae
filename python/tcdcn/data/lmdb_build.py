"""Build shuffled, augmented multi-label LMDBs from face lists (the library behind
tools/make_lmdb.py).

Pipeline: read a list (datasets.py) -> give every face a box (its own, or one derived
from its landmarks, boxes.py) -> split off a validation set by person -> decode each
training face once into a canonical region around its box, kept in memory -> for every
output key k, sample permute(k) is an augmented crop of face permute(k) mod n_faces
(augment.py), written in key order. permute() is a keyed bijection of [0, N), so the
output is shuffled across the whole database while memory stays independent of N, and the
result depends only on the seed (not on the number of workers).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tcdcn.boxes import box_from_landmarks, five_points, rule_for
from tcdcn.data.augment import AugmentConfig, augment
from tcdcn.data.datasets import (
    DataError,
    Sample,
    load_samples,
    read_pts_folder,
    split_by_group,
)
from tcdcn.data.lmdb_io import decode_datum, encode_datum, read_lmdb, write_lmdb
from tcdcn.geometry import (
    apply_matrix,
    denormalise,
    face_region,
    normalise,
    region_crop,
    square_crop,
)
from tcdcn.image import load_image, to_grey
from tcdcn.paths import data_root
from tcdcn.schemes import (
    POSE_INDEX,
    TASKS,
    UNLABELLED,
    LandmarkScheme,
    label_dim,
    label_layout,
)

log = logging.getLogger(__name__)


CHUNK = 1024             # keys per work unit (part of the output's definition)


FAR_OUTSIDE = 0.1        # a point further out than this fraction of the image is bad input




def extra_faces_300w(folder: Path, scheme: LandmarkScheme, with_attributes: bool,
                     errors: list | None = None) -> list[Sample]:
    """300-W faces as extra 5-point training faces: the five points derived from the 68
    (boxes.five_points), the box from them by the 5-point rule, every attribute UNLABELLED.
    All go to training (validation stays on the main dataset's faces)."""
    if scheme.count != 5:
        raise DataError(f"--add-300w adds 5-point faces; this dataset has {scheme.count} points")
    folder = Path(folder)
    if (folder / "300W").is_dir():   # the shared data root rather than its 300W folder
        folder = folder / "300W"
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (300-W faces for --add-300w)")
    faces = read_pts_folder(folder, errors=errors)
    if not faces:
        raise DataError(f"{folder}: no 300-W faces (.pts beside an image) found")
    for s in faces:
        s.landmarks = five_points(s.landmarks)
        s.box = box_from_landmarks(s.landmarks, rule_for(5))
        s.extra["box_from"] = "landmarks"
        s.group = "300w:" + s.group
        if with_attributes:
            s.attributes = np.full(len(TASKS), UNLABELLED, dtype=np.int64)
    return faces




@functools.lru_cache(maxsize=8)
def _file_lines(path: str) -> tuple[str, ...]:
    with open(path, newline="") as f:
        return tuple(f.read().splitlines())


def source_line(sample: Sample) -> str:
    """The list line a sample was read from (without its line ending and leading spaces);
    for a face with a file of its own (a 300-W .pts), its image's path under the data root."""
    path, sep, lineno = sample.source.rpartition(":")
    if not sep or not lineno.isdigit():
        return sample.extra.get("rel", str(sample.image))
    return _file_lines(path)[int(lineno) - 1].strip()


def read_val_list(path: Path, samples: list[Sample]) -> set[str]:
    """Groups of the faces named in a validation list: lines whose first field is an
    image path as the list writes it (a val_list.txt written by this tool is one)."""
    names = {line.split()[0].replace("\\", "/") for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    groups = {s.group for s in samples if any(str(s.image).endswith(n) for n in names)}
    if not groups:
        raise DataError(f"{path}: names none of the faces")
    return groups


@dataclass
class Prepared:
    """A face decoded once: a square region around its box, at a fixed scale."""
    region: np.ndarray
    points: np.ndarray            # K x 2 in region pixels
    attributes: np.ndarray | None
    centre: np.ndarray            # box centre in region pixels
    side: float                   # box side in region pixels


def read_image(sample: Sample, channels: int) -> np.ndarray:
    if not sample.image.is_file():
        raise DataError(f"{sample.source}: image {sample.image} not found")
    try:
        # decoded exactly as inference decodes (EXIF, truncation check, 16 bit)
        image = load_image(sample.image)
    except ValueError as err:
        reason = str(err).removeprefix(f"{sample.image}: ")
        raise DataError(f"{sample.source}: image {sample.image} cannot be decoded "
                        f"({reason})") from None
    if channels == 1:
        # grey as inference makes it: libjpeg's own grey decode differs by a grey level
        image = to_grey(image)
    elif image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    h, w = image.shape[:2]
    tol = FAR_OUTSIDE * max(h, w)
    pts = sample.landmarks
    bad = np.where((pts[:, 0] < -tol) | (pts[:, 0] > w - 1 + tol) |
                   (pts[:, 1] < -tol) | (pts[:, 1] > h - 1 + tol))[0]
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{sample.source}: point {i + 1} ({pts[i, 0]:.1f}, {pts[i, 1]:.1f}) "
                        f"is far outside the {w}x{h} image {sample.image}")
    return image


def prepare(sample: Sample, size: int, channels: int) -> Prepared:
    image = read_image(sample, channels)
    centre, side = square_crop(sample.box)
    region, m, c, s = face_region(image, centre, side, size)
    return Prepared(region=region, points=apply_matrix(m, sample.landmarks),
                    attributes=sample.attributes, centre=c, side=s)


def plain_crop(p: Prepared, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The unaugmented crop (the box itself) and its targets."""
    crop, m = region_crop(p.region, p.centre, p.side, size)
    return crop, normalise(apply_matrix(m, p.points), size)


def label_vector(targets: np.ndarray, attributes: np.ndarray | None) -> np.ndarray:
    """x1, y1, x2, y2, ... (crop units) then the 0-based attribute class ids."""
    parts = [np.asarray(targets, dtype=np.float32).ravel()]
    if attributes is not None:
        parts.append(np.asarray(attributes, dtype=np.float32))
    return np.concatenate(parts)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """splitmix64 finaliser of x ^ key (uint64, wraps)."""
    z = (x ^ key) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def permute(index: np.ndarray, n: int, seed: int, rounds: int = 4) -> np.ndarray:
    """A pseudo-random permutation of [0, n) applied to `index` (Feistel network over the
    next even power of two, cycle-walking back into range). Same seed, same permutation."""
    if n <= 1:
        return np.zeros_like(np.asarray(index, dtype=np.int64))
    bits = max(2, math.ceil(math.log2(n)))
    bits += bits % 2
    half = np.uint64(bits // 2)
    mask = np.uint64((1 << (bits // 2)) - 1)
    keys = [np.uint64(int.from_bytes(hashlib.sha256(f"{seed}:{r}".encode()).digest()[:8], "little"))
            for r in range(rounds)]
    x = np.asarray(index, dtype=np.uint64).copy()
    todo = np.ones(len(x), dtype=bool)
    with np.errstate(over="ignore"):
        while todo.any():
            y = x[todo]
            left, right = y >> half, y & mask
            for k in keys:
                left, right = right, left ^ (_mix(right, k) & mask)
            x[todo] = (left << half) | right
            todo = x >= np.uint64(n)
    return x.astype(np.int64)


_FACES: list[Prepared] = []


_JOB: dict = {}


def is_profile(face: Prepared) -> bool:
    """Left or right profile by the pose label (rare in MTFL: 331 of 10,000 faces)."""
    if face.attributes is None or face.attributes[POSE_INDEX] < 0:
        return False
    return TASKS[POSE_INDEX].classes[int(face.attributes[POSE_INDEX])].endswith("profile")


def weighted_faces(faces: list[Prepared], profile_weight: int) -> list[Prepared]:
    """The faces samples are drawn from: every face once, profile faces `profile_weight`
    times (references, not copies)."""
    if profile_weight < 1:
        raise ValueError(f"profile weight must be >= 1, not {profile_weight}")
    extra = [f for f in faces if is_profile(f)] * (profile_weight - 1)
    return faces + extra


def set_job(faces: list[Prepared], **job) -> None:
    global _FACES, _JOB
    _FACES, _JOB = faces, job


def generate_chunk(chunk: int) -> tuple[list[bytes], int]:
    """Records for keys [chunk * CHUNK, ...): (serialised records, redraws)."""
    n, seed, size = _JOB["n"], _JOB["seed"], _JOB["size"]
    scheme: LandmarkScheme = _JOB["scheme"]
    cfg: AugmentConfig = _JOB["augment"]
    start, stop = chunk * CHUNK, min(n, (chunk + 1) * CHUNK)
    ids = permute(np.arange(start, stop), n, seed)
    rng = np.random.default_rng([seed, 2, chunk])
    records, redraws = [], 0
    for sample_id in ids:
        face = _FACES[int(sample_id) % len(_FACES)]
        image, targets, attributes, r = augment(face.region, face.points, face.attributes,
                                                face.centre, face.side, size, scheme, rng, cfg)
        redraws += r
        if image.ndim == 3:
            image = image.transpose(2, 0, 1)
        records.append(encode_datum(image, label_vector(targets, attributes)))
    return records, redraws


def anon_rss_mb() -> float:
    """This process's anonymous resident memory (Linux), in MB; 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bounded_imap(pool, fn, items, ahead: int):
    """pool.imap in order, but with at most `ahead` results in flight: when the writer is
    slower than the workers, results do not pile up in memory."""
    items = iter(items)
    pending = deque(pool.apply_async(fn, (item,)) for _, item in zip(range(ahead), items))
    while pending:
        result = pending.popleft().get()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            break
        yield result


def prepare_one(args) -> tuple[Prepared | None, str | None]:
    sample, size, channels = args
    try:
        return prepare(sample, size, channels), None
    except DataError as err:
        return None, str(err)


OWNER = ".owner-pid"   # inside a build's temporary folder: the pid that writes it


def _quiet_worker() -> None:
    """Workers leave Ctrl-C to the main process, which terminates them (SIGTERM, left at
    its default so that Pool.terminate works): no KeyboardInterrupt or BrokenPipeError
    tracebacks from the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the main process's handler


def remove_stale_temporaries(out: Path) -> list[str]:
    """Remove `.OUT.*` temporary folders that a killed build of the same --out left behind
    (their writer's pid is gone). Returns what was removed."""
    removed = []
    if not out.parent.is_dir():
        return removed
    for d in out.parent.glob(f".{out.name}.*"):
        owner = d / OWNER
        if not d.is_dir() or not owner.is_file():
            continue
        try:
            pid = int(owner.read_text().strip())
            os.kill(pid, 0)
            continue            # its writer is still running
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(str(d))
    return removed


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class BuildConfig:
    dataset: str
    root: Path
    out: Path
    samples: int
    list_path: Path | None = None
    val_fraction: float = 0.1
    val_list: Path | None = None
    seed: int = 0
    workers: int = 2
    size: int = 40
    channels: int = 1
    skip_bad: bool = False
    augment: AugmentConfig = AugmentConfig()
    profile_weight: int = 1   # profile faces are drawn this many times as often
    extra_300w: Path | None = None   # 300-W faces (5 points derived) added to training
    command: str = ""


def build(cfg: BuildConfig, progress=None) -> dict:
    """Write cfg.out/{train_lmdb,val_lmdb,val_list.txt,manifest.json}; returns the manifest.

    Everything is written into a temporary folder beside cfg.out and renamed at the end.
    `progress(total)` returns a tqdm-like bar (update(n), set_postfix) or None.
    """
    import resource


    if cfg.out.exists():
        raise FileExistsError(f"{cfg.out} exists; remove it or choose another --out")
    stale = remove_stale_temporaries(cfg.out)
    errors: list[str] | None = [] if cfg.skip_bad else None
    t0 = time.perf_counter()
    samples, scheme, info = load_samples(cfg.dataset, cfg.root, cfg.list_path, errors)
    if not samples:
        raise DataError("no usable faces")
    val_groups = read_val_list(cfg.val_list, samples) if cfg.val_list else None
    train, val = split_by_group(samples, cfg.val_fraction, cfg.seed, val_groups)
    with_attributes = all(s.attributes is not None for s in samples)
    if cfg.extra_300w is not None:
        extra = extra_faces_300w(cfg.extra_300w, scheme, with_attributes, errors)
        info["extra_300w"] = {"folder": str(cfg.extra_300w), "faces": len(extra),
                              "points": "eye centres = mean of 36-41 / 42-47, nose 30, "
                                        "mouth 48 and 54", "attributes": "unlabelled"}
        train = train + extra

    ctx = multiprocessing.get_context("fork")
    jobs = [(s, cfg.size, cfg.channels) for s in train + val]
    if cfg.workers > 1:
        pool = ctx.Pool(cfg.workers, initializer=_quiet_worker)
        try:
            prepared = pool.map(prepare_one, jobs, chunksize=64)
        except BaseException:
            pool.terminate()
            pool.join()
            raise
        pool.close()
        pool.join()
    else:
        prepared = [prepare_one(j) for j in jobs]
    faces_train, faces_val, val_used = [], [], []
    for i, (face, err) in enumerate(prepared):
        if err is not None:
            if errors is None:
                raise DataError(err)
            errors.append(err)
        elif i < len(train):
            faces_train.append(face)
        else:
            faces_val.append(face)
            val_used.append(val[i - len(train)])
    if not faces_train:
        raise DataError("no usable training faces")
    t_prepared = time.perf_counter()

    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.out.name}.", dir=cfg.out.parent))
    (tmp / OWNER).write_text(str(os.getpid()))
    try:
        # validation: one plain crop per face, in list order
        def val_records():
            for face in faces_val:
                image, targets = plain_crop(face, cfg.size)
                if image.ndim == 3:
                    image = image.transpose(2, 0, 1)
                yield encode_datum(image, label_vector(targets, face.attributes))
        n_val = write_lmdb(tmp / "val_lmdb", val_records())
        # The validation faces' own lines, in the list's format, so that evaluate.py can
        # read them as it reads the original list (same --dataset and --root).
        (tmp / "val_list.txt").write_text("".join(source_line(s) + "\n" for s in val_used))

        # training: N augmented samples, shuffled across the whole database
        pool_faces = weighted_faces(faces_train, cfg.profile_weight)
        set_job(pool_faces, n=cfg.samples, seed=cfg.seed, size=cfg.size, scheme=scheme,
                augment=cfg.augment)
        chunks = range(math.ceil(cfg.samples / CHUNK))
        bar = progress(cfg.samples) if progress else None
        redraws, peak_anon = [0], [anon_rss_mb()]

        def train_records():
            results = (bounded_imap(pool, generate_chunk, chunks, ahead=2 * cfg.workers)
                       if pool else map(generate_chunk, chunks))
            for records, r in results:
                redraws[0] += r
                peak_anon[0] = max(peak_anon[0], anon_rss_mb())
                yield from records
                if bar is not None:
                    bar.update(len(records))

        t_gen = time.perf_counter()
        pool = ctx.Pool(cfg.workers, initializer=_quiet_worker) if cfg.workers > 1 else None
        try:
            n_train = write_lmdb(tmp / "train_lmdb", train_records(),
                                 map_size=max(1 << 30, cfg.samples * cfg.size * cfg.size
                                              * cfg.channels * 3))
        except BaseException:
            if pool:   # terminate, not close+join: workers may be blocked sending a result
                pool.terminate()
                pool.join()
            raise
        if pool:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t_gen

        lists = [p for p in (info.get("list"), info.get("boxes_from")) if p]
        manifest = {
            "dataset": cfg.dataset, "root": str(cfg.root), "command": cfg.command,
            "seed": cfg.seed, "scheme": scheme.name, "landmark_names": list(scheme.names),
            "crop": {"size": cfg.size, "channels": cfg.channels,
                     "box": "square about the face box centre, side = box side",
                     "targets": "crop coordinates / crop size: (x_out + 0.5) / size"},
            "label_dim": label_dim(scheme, with_attributes),
            "label_layout": {k: [v.start, v.stop] for k, v in
                             label_layout(scheme, with_attributes).items()},
            "label_order": "x1 y1 x2 y2 ... then 0-based class ids",
            "augmentation": cfg.augment.as_dict(),
            "profile_weight": cfg.profile_weight,
            "extra_300w": info.get("extra_300w"),
            "counts": {"faces_read": info["faces"], "train_faces": len(faces_train),
                       "val_faces": len(faces_val), "train_records": n_train,
                       "val_records": n_val, "redraws": redraws[0],
                       "profile_faces": sum(is_profile(f) for f in faces_train),
                       "sampling_pool": len(pool_faces),
                       "boxes_derived_from_landmarks": info["boxes_derived_from_landmarks"]},
            "split": {"val_fraction": cfg.val_fraction,
                      "val_list": str(cfg.val_list) if cfg.val_list else None,
                      "by": "person (LFW name), else image"},
            "skipped": {"count": len(errors or []), "items": errors or []},
            "removed_stale_temporaries": stale,
            "sources": {p: sha256_of(Path(p)) for p in lists},
            "box_rule": info["box_rule"],
            "timing": {"prepare_s": t_prepared - t0, "generate_s": seconds,
                       "samples_per_s": n_train / seconds if seconds > 0 else None,
                       "workers": cfg.workers},
            # The main process's own allocations (its RSS also counts LMDB's file map, page
            # cache that grows with the file), and the largest worker's peak RSS.
            "memory_mb": {"main_peak_anonymous": peak_anon[0],
                          "worker_peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                          "main_peak_rss_incl_lmdb_map": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
        }
        text = json.dumps(manifest, indent=2) + "\n"
        manifest = json.loads(text)  # what the file says, tuples as lists
        (tmp / "manifest.json").write_text(text)
        (tmp / OWNER).unlink()
        os.rename(tmp, cfg.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest

def lmdb_parser(description: str | None = None) -> argparse.ArgumentParser:
    """tools/make_lmdb.py's options; also how a model's recorded make_lmdb command is read
    back (training.release.remeasure), with the same defaults."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("mtfl", "facepoint", "300w"), required=True)
    p.add_argument("--root", type=Path, default=data_root(),
                   help="data root (default $TCDCN_DATA or ../shared/data); for facepoint "
                        "and 300w the folder the list's paths (or the .pts files) are under")
    p.add_argument("--list", type=Path, help="list file (mtfl: default MTFL/training.txt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    p.add_argument("--samples", type=int, required=True, help="augmented training samples")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of faces held out for validation, by person (default 0.1)")
    split.add_argument("--val-list", type=Path, help="file naming the validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--size", type=int, default=40, help="crop size in pixels (default 40)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1)
    p.add_argument("--profile-weight", type=int, default=1, metavar="W",
                   help="draw left/right profile faces W times as often (default 1)")
    p.add_argument("--spread", type=float, default=1.0, metavar="S",
                   help="geometric augmentation ranges (rotation, scale, shift) times S about "
                        "their centres (default 1: +-30 degrees, scale 0.9-1.4, shift 0.08)")
    p.add_argument("--add-300w", type=Path, metavar="FOLDER",
                   help="(5-point datasets) add the 300-W faces under FOLDER (or DATA_ROOT/300W) "
                        "to training, 5 points derived from their 68, attributes unlabelled")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad lines/images, count and list them in the manifest")
    p.add_argument("--preview", type=int, default=0, metavar="K",
                   help="write OUT/preview.png with K records read back")
    return p


def check_lmdb_args(p: argparse.ArgumentParser, args) -> None:
    """The checks argparse cannot make (p.error on failure): ranges, and a writable --out
    before thousands of faces are decoded."""
    for name, low in (("samples", 1), ("workers", 1), ("size", 8), ("profile_weight", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low}, "
                    f"not {getattr(args, name)}")
    if args.val_list is None and not 0 <= args.val_fraction < 1:
        p.error(f"--val-fraction must be in [0, 1), not {args.val_fraction}")
    # fail before decoding thousands of faces, not after
    parent = args.out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        p.error(f"--out {args.out}: cannot write in {parent}")


def preview(out: Path, k: int, size: int) -> Path:
    """A contact sheet of the first k training records with their landmarks and labels."""
    scale, tiles = 4, []
    for i, (_, value) in enumerate(read_lmdb(out / "train_lmdb")):
        if i >= k:
            break
        image, labels, _ = decode_datum(value)
        image = image.transpose(1, 2, 0)
        tile = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        if tile.ndim == 2 or tile.shape[2] == 1:
            tile = cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)
        manifest = json.loads((out / "manifest.json").read_text())
        n_points = manifest["label_layout"]["landmarks"][1] // 2
        # pixel centres scale as (u + 0.5) * scale - 0.5 under the nearest-neighbour zoom
        points = (denormalise(labels[:2 * n_points].reshape(-1, 2), size) + 0.5) * scale - 0.5
        for j, (x, y) in enumerate(points):
            colour = (0, 0, 255) if j % 2 == 0 else (0, 255, 0)
            cv2.circle(tile, (int(x), int(y)), 2, colour, -1)
        if len(labels) > 2 * n_points:
            text = " ".join(t.classes[int(v)][:4] for t, v in zip(TASKS, labels[2 * n_points:]))
            cv2.putText(tile, text, (2, tile.shape[0] - 4), cv2.FONT_HERSHEY_PLAIN, 0.7,
                        (255, 255, 0), 1)
        tiles.append(tile)
    cols = min(8, len(tiles))
    rows = [np.hstack(tiles[r:r + cols] + [np.zeros_like(tiles[0])] * (cols - len(tiles[r:r + cols])))
            for r in range(0, len(tiles), cols)]
    path = out / "preview.png"
    cv2.imwrite(str(path), np.vstack(rows))
    return path
