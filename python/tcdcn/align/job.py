"""An alignment job: its inputs split into shards, each shard aligned by a worker into
crops and one Parquet part, written whole or not at all.

OUT/
  manifest.json          the inputs' hash, the shard size and the settings (a rerun with
                         other inputs or settings is refused: another --out, or --restart)
  inputs.txt             the inputs, one a line, in shard order
  crops/...              the aligned crops: the image's path below the inputs' common
                         folder, then .face<N>.<ext> (.f<frame>.face<N> for video frames)
  faces.parquet/part-NNNNN.parquet
                         one per finished shard: a row per face, and a row for each image
                         without a face or that failed (status, reason)
  summary.json           counts, time, throughput, engine, versions

A shard is done when its part exists; its crops are written before it, so a killed run
started again redoes exactly the unfinished shards (their crops are overwritten by name)
and every input ends in exactly one part.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from glob import glob
from pathlib import Path

import cv2
import numpy as np

from tcdcn.align.template import template, warp
from tcdcn.api import Detector
from tcdcn.detection.base import MIN_FACE
from tcdcn.image import VIDEO_SUFFIXES, load_image, to_grey
from tcdcn.inputs import MEDIA_SUFFIXES, inside, walk_media
from tcdcn.paths import atomic_output, write_json

PARTS = "faces.parquet"
STAGES = ("decode", "detect", "landmarks", "warp", "write")


@dataclass
class AlignSettings:
    """What a job makes; the same settings give the same rows with any engine."""
    model: str = "tcdcn_5pt"
    backend: str = "auto"
    template: str = "arcface"
    size: int | None = None          # crop width (default: the template's)
    min_face: int | None = None      # smallest face searched (default: Detector's)
    video_step: int = 1              # every Nth frame of a video
    crop_format: str = "jpg"         # jpg (quality 95) or png
    shard_size: int = 64

    def __post_init__(self):
        template(self.template, self.size)   # raises on a bad name or size
        if self.crop_format not in ("jpg", "png"):
            raise ValueError(f"crop format must be jpg or png, not {self.crop_format!r}")
        if not 1 <= self.video_step <= 100000:
            raise ValueError(f"video step must be 1 or more frames, not {self.video_step}")
        if not 1 <= self.shard_size <= 100000:
            raise ValueError(f"shard size must be 1 or more inputs, not {self.shard_size}")


@dataclass
class Shard:
    index: int
    items: list[str]     # input paths, in order
    root: str            # the inputs' common folder (crops keep paths below it)
    out: str

    @property
    def part(self) -> Path:
        return Path(self.out) / PARTS / f"part-{self.index:05d}.parquet"


@dataclass
class ShardResult:
    index: int
    images: int
    rows: int
    faces: int
    failed: int
    seconds: dict = field(default_factory=dict)   # per stage


# ---- inputs -------------------------------------------------------------------------------

def list_inputs(specs: list[str], errors: list[str], out: Path | None = None) -> list[Path]:
    """Images and videos from folders (inputs.walk_media), list files (.txt/.lst: one path a
    line, relative to the list's folder; # comments), globs and files, sorted within each
    spec; a path given twice counts once; nothing inside the job's folder `out` (its own
    crops). What cannot be read goes to `errors`."""
    def own(path) -> bool:
        return out is not None and inside(path, out)

    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if any(c in spec for c in "*?[") and not path.exists():
            matches = sorted(Path(p) for p in glob(spec, recursive=True))
            if not matches:
                errors.append(f"{spec}: no file matches")
            found += [p for p in matches if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES
                      and not own(p)]
        elif path.is_dir():
            found += walk_media(path, errors, skip=own)
        elif path.suffix.lower() in (".txt", ".lst") and path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                found.append(Path(line) if Path(line).is_absolute() else path.parent / line)
        elif path.exists() or os.path.lexists(path):   # a broken one becomes an error row
            found.append(path)
        else:
            errors.append(f"{spec}: no such file, folder or list")
    seen, unique = set(), []
    for p in found:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(Path(key))
    return unique


def plan(specs: list[str], out: Path, settings: AlignSettings, restart: bool = False,
         errors: list[str] | None = None) -> list[Shard]:
    """The job's shards; the manifest is written once and must match on a rerun."""
    errors = errors if errors is not None else []
    items = list_inputs(specs, errors, out)
    if not items:
        raise ValueError("no images or videos in " + " ".join(specs))
    root = os.path.commonpath([str(p.parent) for p in items])
    text = "".join(f"{p}\n" for p in items)
    manifest = {"inputs": len(items), "inputs_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "root": root, "settings": asdict(settings)}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.json"
    if path.is_file() and not restart:
        before = json.loads(path.read_text())
        if before != manifest:
            what = [k for k in manifest if before.get(k) != manifest[k]]
            raise ValueError(f"{out} holds a job with other {' and '.join(what)}; continue it with "
                             "the same inputs and settings, use another --out, or --restart")
    if restart:
        for name in (PARTS, "crops", "summary.json"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    write_json(path, manifest)
    with atomic_output(out / "inputs.txt") as tmp:
        tmp.write_text(text)
    (out / PARTS).mkdir(exist_ok=True)
    n = settings.shard_size
    return [Shard(k, [str(p) for p in items[i:i + n]], root, str(out))
            for k, i in enumerate(range(0, len(items), n))]


# ---- one shard ----------------------------------------------------------------------------

class Aligner:
    """Aligns shards: the Detector is loaded once (one per worker process or actor)."""

    def __init__(self, settings: AlignSettings):
        self.settings = settings
        self.detector = Detector(settings.model, backend=settings.backend,
                                 min_face=settings.min_face or MIN_FACE)
        self.template = template(settings.template, settings.size)
        self.tasks = [t.name for t in self.detector.model.tasks]

    def __call__(self, shard: Shard) -> ShardResult:
        if shard.part.is_file():
            return ShardResult(shard.index, 0, 0, 0, 0)
        seconds = dict.fromkeys(STAGES, 0.0)
        rows, images, failed = [], 0, 0
        for item in shard.items:
            path = Path(item)
            frames = self._frames(path, seconds) if path.suffix.lower() in VIDEO_SUFFIXES \
                else self._image(path, seconds)
            for frame_no, image, error in frames:
                images += 1
                if error is not None:
                    failed += 1
                    rows.append(self._row(path, frame_no, status="error", reason=error))
                    continue
                rows += self._faces(path, frame_no, image, shard, seconds)
        t = time.perf_counter()
        write_part(shard.part, rows, self.tasks)
        seconds["write"] += time.perf_counter() - t
        faces = sum(r["status"] == "ok" for r in rows)
        return ShardResult(shard.index, images, len(rows), faces, failed, seconds)

    def _image(self, path: Path, seconds: dict):
        t = time.perf_counter()
        try:
            image = load_image(path)
        except (OSError, ValueError) as err:
            seconds["decode"] += time.perf_counter() - t
            yield -1, None, str(err)
            return
        seconds["decode"] += time.perf_counter() - t
        yield -1, image, None

    def _frames(self, path: Path, seconds: dict):
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            yield -1, None, f"{path}: not a video OpenCV can open"
            return
        frame_no = 0
        try:
            while True:
                t = time.perf_counter()
                ok, frame = cap.read()
                seconds["decode"] += time.perf_counter() - t
                if not ok:
                    break
                if frame_no % self.settings.video_step == 0:
                    yield frame_no, frame, None
                frame_no += 1
        finally:
            cap.release()
        if frame_no == 0:
            yield -1, None, f"{path}: no frames could be read"

    def _faces(self, path: Path, frame_no: int, image: np.ndarray, shard: Shard,
               seconds: dict) -> list[dict]:
        det = self.detector
        t = time.perf_counter()
        grey = to_grey(image)
        boxes, scores = det.detect_oriented(image if det.wants_colour else grey)
        seconds["detect"] += time.perf_counter() - t
        t = time.perf_counter()
        faces = det.model.predict(grey, boxes, scores, refine=det.refine)
        seconds["landmarks"] += time.perf_counter() - t
        if not faces:
            return [self._row(path, frame_no, status="no_face")]
        rows = []
        for j, face in enumerate(faces):
            t = time.perf_counter()
            crop, _ = warp(image, face.five_points, self.template)
            seconds["warp"] += time.perf_counter() - t
            t = time.perf_counter()
            rel = crop_name(path, shard.root, frame_no, j, self.settings.crop_format)
            write_crop(Path(shard.out) / rel, crop, self.settings.crop_format)
            seconds["write"] += time.perf_counter() - t
            rows.append(self._row(path, frame_no, face=j, status="ok", found=face, crop=rel))
        return rows

    def _row(self, path: Path, frame_no: int, face: int = -1, status: str = "ok",
             reason: str | None = None, found=None, crop: str | None = None) -> dict:
        row = {"image": str(path), "frame": frame_no, "face": face, "status": status,
               "reason": reason, "box": None, "score": None, "points": None,
               "five_points": None, "turn": None, "crop": crop, "uncertainty": None,
               "quality": None}
        if found is not None:
            row.update(box=[float(v) for v in found.box], score=float(found.score),
                       points=found.landmarks.astype(float).tolist(),
                       five_points=found.five_points.astype(float).tolist(), turn=found.turn)
            if found.uncertainty is not None:   # a model with the uncertainty head
                row.update(uncertainty=found.uncertainty.astype(float).tolist(),
                           quality=float(found.quality))
        for task in self.tasks:
            label, prob = found.attributes[task] if found is not None else (None, None)
            row[task], row[f"{task}_prob"] = label, prob
        return row


def crop_name(path: Path, root: str, frame_no: int, face: int, ext: str) -> str:
    """crops/<path below the inputs' common folder>[.f<frame>].face<N>.<ext>: unique per
    image, frame and face, and leading back to them."""
    rel = os.path.relpath(path, root)
    frame = f".f{frame_no:06d}" if frame_no >= 0 else ""
    return f"crops/{rel}{frame}.face{face}.{ext}"


def write_crop(path: Path, crop: np.ndarray, ext: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else []
    with atomic_output(path, suffix=f".{ext}") as tmp:
        if not cv2.imwrite(str(tmp), crop, params):
            raise OSError(f"cannot write the crop {path}")


def schema(tasks: list[str]):
    import pyarrow as pa
    point = pa.list_(pa.float64(), 2)
    fields = [("image", pa.string()), ("frame", pa.int32()), ("face", pa.int32()),
              ("status", pa.string()), ("reason", pa.string()),
              ("box", pa.list_(pa.float64(), 4)), ("score", pa.float64()),
              ("points", pa.list_(point)), ("five_points", pa.list_(point, 5)),
              ("turn", pa.int16()), ("crop", pa.string()),
              ("uncertainty", pa.list_(pa.float64())), ("quality", pa.float64())]
    for task in tasks:
        fields += [(task, pa.string()), (f"{task}_prob", pa.float64())]
    return pa.schema(fields)


def write_part(path: Path, rows: list[dict], tasks: list[str]) -> None:
    """A shard's rows as one Parquet file, renamed into place when whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pylist(rows, schema=schema(tasks))
    with atomic_output(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_rows(out: Path):
    """Every finished shard's rows as one pyarrow Table."""
    import pyarrow.parquet as pq
    return pq.read_table(Path(out) / PARTS)
