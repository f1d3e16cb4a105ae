"""Find faces, their landmarks and attributes in images, folders or videos.

  tcdcn-detect photo.jpg folder/ clip.mp4 --out detect_out --annotate [--smooth]
  (the same: tools/detect.py ..., python -m tcdcn ...)

Writes one JSON line per image or video frame to OUT/faces.jsonl (path, frame, faces with
box, score, landmarks and attributes); with --annotate also annotated images and videos
under OUT/annotated/ (the inputs' paths below their common folder, plus .png or .mp4).
--boxes FILE supplies boxes instead of the detector (lines: `image left top right bottom`).
--track N follows the faces of a video with the landmark model and detects again every N
frames or when a face fails MTCNN's face check (faces then carry a track_id).
Bad files are reported and skipped; the exit code is 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import os.path
import sys
from collections import Counter, defaultdict
from pathlib import Path

import cv2

from tcdcn.api import Detector, draw
from tcdcn.detection.base import MIN_FACE
from tcdcn.image import IMAGE_SUFFIXES, load_image
from tcdcn.models import DEFAULT_MODEL
from tcdcn.video.smoothing import LandmarkSmoother
from tcdcn.video.tracking import Tracker

VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="images, folders (searched) or videos")
    p.add_argument("--out", type=Path, default=Path("detect_out"))
    p.add_argument("--model", type=Path, help="model folder (default: the bundled tcdcn_5pt)")
    p.add_argument("--backend", choices=("auto", "caffe", "opencv"), default="auto",
                   help="where the landmark model and S-Net run (MTCNN's nets: OpenCV dnn); "
                        "auto: this project's Caffe when pycaffe imports, else stock OpenCV dnn")
    p.add_argument("--detector", choices=("mtcnn", "haar"), default="mtcnn",
                   help="face detector (default mtcnn, its models ship with the package)")
    p.add_argument("--mtcnn", type=Path,
                   help="another folder with MTCNN det1-3 models (default: the bundled ones)")
    p.add_argument("--proposals", choices=("snet", "pnet"), default="snet",
                   help="MTCNN's first stages: snet (default: the single-shot S-Net, and the "
                        "classic P-Net + R-Net only where it finds no face) or pnet (classic)")
    p.add_argument("--crop-from", choices=("box", "points"),
                   help="place crops from MTCNN's calibrated box or its five points "
                        "(default: as model.json says)")
    p.add_argument("--boxes", type=Path, help="boxes file instead of the detector")
    p.add_argument("--track", type=int, default=0, metavar="N",
                   help="videos: follow faces with the landmark model, detecting again every "
                        "N frames or when a face fails MTCNN's face check (0: detect every "
                        "frame)")
    p.add_argument("--batch", type=int, default=64, help="images per batch")
    p.add_argument("--min-face", type=int, default=MIN_FACE, metavar="PX",
                   help=f"smallest face searched, in pixels (default {MIN_FACE}; 40 takes about 85%% of "
                        "the detection time on small photos)")
    p.add_argument("--pad", type=float, nargs="+", default=None, metavar="FRACTION",
                   help="border added before detection, as fractions of the longer side, "
                        "each tried while none found a face scoring 0.9 (default: 0.1, 0.25, "
                        "0.5, for tight face crops; 0 for none)")
    p.add_argument("--turns", type=int, nargs="*", default=None, metavar="DEG",
                   help="turns (degrees clockwise) searched where the upright image has no "
                        "confident face (default: 90 180 270 30 330: quarter turns and 30-degree "
                        "tilts; none given: upright only)")
    p.add_argument("--annotate", action="store_true", help="write annotated images/videos")
    p.add_argument("--smooth", action="store_true", help="one-euro smoothing in videos")
    args = p.parse_args(argv)
    if args.track < 0:
        p.error(f"--track must be 0 (off) or a number of frames, not {args.track}")
    return args


def expand(inputs: list[Path], ignored: list[str] | None = None) -> list[Path]:
    """Files named, and the images and videos inside folders named (recursively); other
    files inside folders are listed in `ignored`."""
    files = []
    for path in inputs:
        if path.is_dir():
            for p in sorted(p for p in path.rglob("*") if p.is_file()):
                if p.suffix.lower() in set(IMAGE_SUFFIXES) | VIDEO_EXT:
                    files.append(p)
                elif ignored is not None:
                    ignored.append(str(p))
        else:
            files.append(path)
    return files


def progress_bar():
    """tqdm where it is installed (the training extra has it), else a quiet stand-in: the
    package's runtime dependencies are numpy and OpenCV only."""
    try:
        from tqdm import tqdm
        return tqdm
    except ImportError:
        class Quiet:
            def __init__(self, *args, **kwargs):
                pass

            def update(self, n=1):
                pass

            def close(self):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False
        return Quiet


def common_root(files: list[Path]) -> Path:
    """The deepest folder holding every input (annotated copies keep paths below it)."""
    return Path(os.path.commonpath([str(f.resolve().parent) for f in files]))


def output_path(out: Path, f: Path, root: Path, suffix: str) -> Path:
    """OUT/annotated/<path of f below the inputs' common folder, with `suffix`>: unique per
    input (two a.jpg in different folders stay apart) and never an input file itself."""
    rel = f.resolve().relative_to(root)
    return out / "annotated" / rel.with_name(rel.name + suffix)


def run_chunk(detector, loaded, given, used, failed) -> list:
    """Faces per loaded image (None where one failed): batched, and image by image when
    the batch fails, so one bad image costs only itself."""
    def one(f, im):
        if given is None:
            return detector(im)
        key = str(f.resolve())
        used.add(key)
        return detector(im, boxes=given.get(key, []))
    if given is None:
        try:
            return detector.batch([im for _, im in loaded])
        except (cv2.error, ValueError, MemoryError):
            pass
    results = []
    for f, im in loaded:
        try:
            results.append(one(f, im))
        except (cv2.error, ValueError, MemoryError) as err:
            msg = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            failed.append(f"{f}: detection failed ({msg})")
            print(f"skipped {failed[-1]}", file=sys.stderr)
            results.append(None)
    return results


def read_boxes(path: Path) -> dict[str, list[list[float]]]:
    """`image left top right bottom` per line (UTF-8, a BOM is fine); every box finite with
    right > left and bottom > top. Errors name the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such boxes file")
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    boxes = defaultdict(list)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        try:
            if len(fields) != 5:
                raise ValueError
            box = [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'image left top right bottom'") from None
        if not all(math.isfinite(v) for v in box):
            raise ValueError(f"{path}:{lineno}: the box has a non-finite value: {line.strip()}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{path}:{lineno}: empty or inverted box (right must exceed left, "
                             f"bottom must exceed top): {line.strip()}")
        boxes[str(Path(fields[0]).resolve())].append(box)
    return boxes


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    tqdm = progress_bar()

    try:
        detector = Detector(args.model or DEFAULT_MODEL, batch=args.batch,
                            detector=args.detector, mtcnn=args.mtcnn, backend=args.backend,
                            crop_from=args.crop_from, min_face=args.min_face,
                            pad="auto" if args.pad is None else args.pad,
                            turns="auto" if args.turns is None else tuple(args.turns),
                            proposals=args.proposals)
        given = read_boxes(args.boxes) if args.boxes else None
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"model {detector.model.folder.name}, {detector.model.backend} backend",
          file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    ignored: list[str] = []
    files = expand(args.inputs, ignored)
    if ignored:
        kinds = Counter(Path(f).suffix.lower() or "(none)" for f in ignored)
        print(f"ignored {len(ignored)} files in the folders that are not images or videos "
              f"this tool reads ({', '.join(f'{k} {n}' for k, n in kinds.most_common())}); "
              "summary.json lists them", file=sys.stderr)
    if not files:
        print("error: no images or videos in " + " ".join(map(str, args.inputs)),
              file=sys.stderr)
        return 1
    inputs = {f.resolve() for f in files}
    root = common_root(files)
    used: set[str] = set()
    failed, n_faces = [], 0
    with open(args.out / "faces.jsonl", "w") as jsonl:
        images = [f for f in files if f.suffix.lower() not in VIDEO_EXT]
        videos = [f for f in files if f.suffix.lower() in VIDEO_EXT]
        bar = tqdm(total=len(images), unit="image", disable=not images)
        for start in range(0, len(images), args.batch):
            chunk, loaded = images[start:start + args.batch], []
            for f in chunk:
                try:
                    loaded.append((f, load_image(f)))
                except (OSError, ValueError) as err:
                    failed.append(f"{f}: {err}")
                    print(f"skipped {err}", file=sys.stderr)
            results = run_chunk(detector, loaded, given, used, failed)
            for (f, im), faces in zip(loaded, results):
                if faces is None:     # this image failed; already reported
                    continue
                n_faces += len(faces)
                jsonl.write(json.dumps({"path": str(f), "faces": [x.as_dict() for x in faces]}) + "\n")
                if args.annotate:
                    target = output_path(args.out, f, root, ".png")
                    if target.resolve() in inputs:
                        failed.append(f"{f}: its annotated copy {target} would overwrite an input")
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(target), draw(im, faces))
            bar.update(len(chunk))
        bar.close()
        for f in videos:
            cap = cv2.VideoCapture(str(f))
            if not cap.isOpened():
                failed.append(f"{f}: not a video OpenCV can open")
                print(f"skipped {failed[-1]}", file=sys.stderr)
                continue
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            tracker = (Tracker(detector, redetect_every=args.track,
                               smooth_fps=fps if args.smooth else None) if args.track else None)
            smoother = LandmarkSmoother(fps) if args.smooth and not tracker else None
            writer, frame_no = None, 0
            with tqdm(total=total, unit="frame", desc=f.name) as vbar:
                while True:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    faces = tracker(frame) if tracker else detector(frame)
                    if smoother:
                        faces = smoother(faces)
                    n_faces += len(faces)
                    jsonl.write(json.dumps({"path": str(f), "frame": frame_no,
                                            "faces": [x.as_dict() for x in faces]}) + "\n")
                    if args.annotate:
                        if writer is None:
                            h, w = frame.shape[:2]
                            target = output_path(args.out, f, root, ".mp4")
                            target.parent.mkdir(parents=True, exist_ok=True)
                            writer = cv2.VideoWriter(str(target),
                                                     cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                        writer.write(draw(frame, faces))
                    frame_no += 1
                    vbar.update(1)
            cap.release()
            if writer is not None:
                writer.release()
            if frame_no == 0:
                failed.append(f"{f}: no frames could be read")
            elif total and frame_no < total:
                failed.append(f"{f}: read {frame_no} of its {total} frames (corrupt?)")
                print(f"error: {failed[-1]}", file=sys.stderr)
    if given is not None:
        for key in sorted(set(given) - used):
            failed.append(f"{args.boxes}: boxes for {key}, which is not among the inputs "
                          "(paths are matched after resolving them from here)")
            print(f"error: {failed[-1]}", file=sys.stderr)
    summary = {"inputs": len(files), "failed": len(failed), "faces": n_faces, "errors": failed,
               "ignored": ignored}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(files) - len(failed)} of {len(files)} inputs processed, {n_faces} faces; "
          f"{len(failed)} failed. Wrote {args.out / 'faces.jsonl'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
