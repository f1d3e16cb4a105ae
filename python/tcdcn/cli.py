"""Find faces, their landmarks and attributes in images, folders or videos.

  tcdcn-detect photo.jpg folder/ clip.mp4 --out detect_out --annotate [--smooth]
  (the same: tools/detect.py ..., python -m tcdcn ...)

Writes one JSON line per image or video frame to OUT/faces.jsonl (path, frame, faces with
box, score, landmarks and attributes); with --annotate also annotated images and videos
under OUT/annotated/ (the inputs' paths below their common folder, plus .png or .mp4).
--boxes FILE supplies boxes instead of the detector (lines: `image left top right bottom`).
--track N follows the faces of a video with the landmark model and detects again every N
frames or when a face fails MTCNN's face check (faces then carry a track_id).
Bad files are reported and skipped; the exit code is 1 if any failed. The run's records
are whole at any interruption (Ctrl-C, SIGTERM, a kill): summary.json says "status":
"running", "interrupted" or "complete", and --resume continues where it stopped. Nothing
under --out is ever read as an input, and the tool's files there are never links.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import os.path
import signal
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path

import cv2

from tcdcn.api import Detector, draw
from tcdcn.detection.base import MIN_FACE
from tcdcn.image import VIDEO_SUFFIXES, load_image
from tcdcn.inputs import inside, walk_media
from tcdcn.models import DEFAULT_MODEL
from tcdcn.paths import atomic_output, write_json
from tcdcn.video.smoothing import LandmarkSmoother
from tcdcn.video.tracking import Tracker

JOURNAL = ".faces.jsonl.journal"   # faces.jsonl's length before the block being appended


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="images, folders (searched) or videos")
    p.add_argument("--out", type=Path, default=Path("detect_out"))
    p.add_argument("--model", type=Path, help="model folder (default: the bundled tcdcn_5pt)")
    p.add_argument("--backend", choices=("auto", "caffe", "onnx", "opencv"), default="auto",
                   help="where the nets run: our Caffe, onnxruntime (every net) or OpenCV dnn "
                        "(4: the Caffe files, 5: the ONNX files); auto: our Caffe when pycaffe "
                        "imports, else onnxruntime when it imports, else OpenCV dnn")
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
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in the same --out: inputs already in "
                        "faces.jsonl are skipped (without it, a run starts over)")
    args = p.parse_args(argv)
    if args.track < 0:
        p.error(f"--track must be 0 (off) or a number of frames, not {args.track}")
    return args


def expand(inputs: list[Path], out: Path | None = None, ignored: list[str] | None = None,
           failed: list[str] | None = None, own: list[str] | None = None) -> list[Path]:
    """Files named, and the images and videos inside folders named (inputs.walk_media);
    other files inside folders are listed in `ignored`. Names that do not exist, broken
    links and link loops go to `failed`; the output folder's annotated/ (this tool's own
    pictures) is never an input and goes to `own`."""
    failed = failed if failed is not None else []
    annotated = out / "annotated" if out is not None else None

    def is_own(path) -> bool:
        return annotated is not None and inside(path, annotated)

    files = []
    for path in inputs:
        if not path.exists():   # False for a broken link and a link loop too
            why = ("a broken link or a link loop" if os.path.lexists(path)
                   else "no such file or folder")
            failed.append(f"{path}: {why}")
        elif path.is_dir():
            files += walk_media(path, failed, ignored, skip=is_own, skipped=own)
        elif is_own(path):
            failed.append(f"{path}: an annotated copy in {annotated}; not an input")
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


OWN_FILES = ("faces.jsonl", "summary.json", "annotated", JOURNAL)


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the run stops between records and says so."""


def check_out(out: Path) -> None:
    """--out is a folder (made if missing) in which this tool's own files are not links:
    it never follows a link it did not make there (a planted faces.jsonl link would
    overwrite another file). --out itself may be a link to a folder."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot make the folder ({err.strerror})") from None
    for name in OWN_FILES:
        if (out / name).is_symlink():
            raise ValueError(f"{out / name} is a link (to {os.readlink(out / name)}); this tool "
                             "writes its own files in --out and does not follow links there: "
                             "remove it or choose another --out")


def write_annotated(target: Path, picture) -> None:
    """An annotated PNG, whole or not at all; a failed write is an error naming it."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target, suffix=".png") as tmp:
            if not cv2.imwrite(str(tmp), picture):
                raise OSError(f"OpenCV could not write {target}")
    except (OSError, cv2.error) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip()
        raise OSError(f"cannot write its annotated copy {target} ({why})") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    tqdm = progress_bar()
    failed: list[str] = []
    try:
        check_out(args.out)
        detector = Detector(args.model or DEFAULT_MODEL, batch=args.batch,
                            detector=args.detector, mtcnn=args.mtcnn, backend=args.backend,
                            crop_from=args.crop_from, min_face=args.min_face,
                            pad="auto" if args.pad is None else args.pad,
                            turns="auto" if args.turns is None else tuple(args.turns),
                            proposals=args.proposals)
        given = read_boxes(args.boxes) if args.boxes else None
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"model {detector.model.folder.name}, {detector.model.backend} backend",
          file=sys.stderr)
    ignored: list[str] = []
    own: list[str] = []
    files = expand(args.inputs, args.out, ignored, failed, own)
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    if own:
        print(f"left out {args.out / 'annotated'}: this tool's own output is never an input",
              file=sys.stderr)
    if ignored:
        kinds = Counter(Path(f).suffix.lower() or "(none)" for f in ignored)
        print(f"ignored {len(ignored)} files in the folders that are not images or videos "
              f"this tool reads ({', '.join(f'{k} {n}' for k, n in kinds.most_common())}); "
              "summary.json lists them", file=sys.stderr)
    if not files:
        print("error: no images or videos in " + " ".join(map(str, args.inputs)),
              file=sys.stderr)
        return 1
    videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
    if args.track and not videos:
        print(f"error: --track {args.track} follows faces through videos, and none of the "
              "inputs is a video; leave it out for still images", file=sys.stderr)
        return 1
    if args.track and len(videos) < len(files):
        print(f"note: --track applies to the {len(videos)} videos; the "
              f"{len(files) - len(videos)} still images are detected as usual", file=sys.stderr)

    records = Records(args.out / "faces.jsonl", resume=args.resume)
    summary = {"status": "running", "inputs": len(files) + len(failed), "resumed": 0,
               "processed": 0, "failed": 0, "faces": 0, "errors": failed, "ignored": ignored,
               "left_out_own_output": own}
    previous = signal.signal(signal.SIGTERM, _terminate) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        write_json(args.out / "summary.json", summary)   # a stale summary never stays
        records.open()
        n_faces = process(args, detector, files, given, records, failed, summary, tqdm)
        status = "complete"
    except OSError as err:   # faces.jsonl itself cannot be written
        print(f"error: {err}", file=sys.stderr)
        failed.append(str(err))
        status, n_faces = "failed", summary["faces"]
    except KeyboardInterrupt:
        status, n_faces = "interrupted", summary["faces"]
        print(f"\ninterrupted: {summary['processed'] + summary['resumed']} of {len(files)} "
              f"inputs done; {args.out / 'faces.jsonl'} holds their records whole. Run again "
              "with --resume to continue", file=sys.stderr)
    finally:
        records.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if given is not None and status == "complete":
        for key in sorted(set(given) - summary.pop("boxes_used")):
            failed.append(f"{args.boxes}: boxes for {key}, which is not among the inputs "
                          "(paths are matched after resolving them from here)")
            print(f"error: {failed[-1]}", file=sys.stderr)
    summary.pop("boxes_used", None)
    summary.update(status=status, failed=len(failed), faces=n_faces, errors=failed)
    try:
        write_json(args.out / "summary.json", summary)
    except OSError as err:
        print(f"error: cannot write {args.out / 'summary.json'} ({err.strerror})", file=sys.stderr)
        return 1
    if status != "complete":
        return 130 if status == "interrupted" else 1
    done = summary["processed"] + summary["resumed"]
    print(f"{done} of {summary['inputs']} inputs processed"
          + (f" ({summary['resumed']} in an earlier run)" if summary["resumed"] else "")
          + f", {n_faces} faces; {len(failed)} failed. Wrote {args.out / 'faces.jsonl'}")
    return 1 if failed else 0


def _terminate(signum, frame):
    raise Interrupted()


class Records:
    """faces.jsonl, appended a block at a time (a batch of images, a whole video) so that
    it is whole at any kill: before a block, the file's length is noted in a journal; a
    block that did not finish is cut off on --resume (and when an interrupt stops it). The
    paths it holds are the inputs done; --resume skips them."""

    def __init__(self, path: Path, resume: bool):
        self.path, self.resume = path, resume
        self.journal = path.with_name(JOURNAL)
        self.done: dict[str, int] = {}   # path -> faces, of the records already there
        self.file = None

    def open(self) -> None:
        if self.resume and self.path.is_file():
            self.repair()
            for line in self.path.read_text().splitlines():
                record = json.loads(line)
                self.done[record["path"]] = self.done.get(record["path"], 0) + len(record["faces"])
            self.file = open(self.path, "a")
        else:
            self.journal.unlink(missing_ok=True)
            self.file = open(self.path, "w")

    def repair(self) -> None:
        """Cut faces.jsonl back to its last whole block."""
        size = None
        if self.journal.is_file():
            size = json.loads(self.journal.read_text())["size"]
        else:
            data = self.path.read_bytes()
            size = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as f:
            f.truncate(size)
        self.journal.unlink(missing_ok=True)

    def append(self, lines: list[str]) -> None:
        if not lines:
            return
        self.file.flush()
        write_json(self.journal, {"size": self.file.tell()})
        self.file.write("".join(lines))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.journal.unlink()

    def close(self) -> None:
        if self.file is None:
            return
        try:
            self.file.flush()
        except OSError:
            pass
        self.file.close()
        if self.journal.is_file():   # stopped inside a block
            self.repair()


def process(args, detector, files, given, records, failed, summary, tqdm) -> int:
    """Detect in every input not yet recorded; returns the faces recorded in all."""
    inputs = {f.resolve() for f in files}
    root = common_root(files)
    used: set[str] = set()
    summary["boxes_used"] = used
    n_faces = 0
    todo = []
    for f in files:
        if str(f) in records.done:
            used.add(str(f.resolve()))
            summary["resumed"] += 1
            n_faces += records.done[str(f)]
        else:
            todo.append(f)
    if summary["resumed"]:
        print(f"resuming: {summary['resumed']} inputs already in {records.path}",
              file=sys.stderr)
    summary["faces"] = n_faces
    images = [f for f in todo if f.suffix.lower() not in VIDEO_SUFFIXES]
    videos = [f for f in todo if f.suffix.lower() in VIDEO_SUFFIXES]
    bar = tqdm(total=len(images), unit="image", disable=not images)
    for start in range(0, len(images), args.batch):
        chunk, loaded = images[start:start + args.batch], []
        for f in chunk:
            try:
                loaded.append((f, load_image(f)))
            except (OSError, ValueError) as err:
                failed.append(f"{f}: {err}" if str(f) not in str(err) else str(err))
                print(f"skipped {failed[-1]}", file=sys.stderr)
        results = run_chunk(detector, loaded, given, used, failed)
        lines = []
        for (f, im), faces in zip(loaded, results):
            if faces is None:     # this image failed; already reported
                continue
            if args.annotate:     # the picture first: a record's picture is always whole
                target = output_path(args.out, f, root, ".png")
                try:
                    if target.resolve() in inputs:
                        raise OSError(f"its annotated copy {target} would overwrite an input")
                    write_annotated(target, draw(im, faces))
                except OSError as err:
                    failed.append(f"{f}: {err}")
                    print(f"skipped {failed[-1]}", file=sys.stderr)
                    continue
            n_faces += len(faces)
            lines.append(json.dumps({"path": str(f), "faces": [x.as_dict() for x in faces]}) + "\n")
        records.append(lines)
        summary["processed"] += len(lines)
        summary["faces"] = n_faces
        bar.update(len(chunk))
    bar.close()
    for f in videos:
        found = run_video(args, detector, f, root, failed, records, tqdm)
        if found is not None:
            n_faces += found
            summary["processed"] += 1
            summary["faces"] = n_faces
    return n_faces


def run_video(args, detector, f: Path, root: Path, failed: list, records, tqdm) -> int | None:
    """One video's frames: their records appended together once it is read to the end,
    its annotated copy renamed into place then. Returns its faces (None: it failed)."""
    cap = cv2.VideoCapture(str(f))
    if not cap.isOpened():
        failed.append(f"{f}: not a video OpenCV can open")
        print(f"skipped {failed[-1]}", file=sys.stderr)
        return None
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    tracker = (Tracker(detector, redetect_every=args.track,
                       smooth_fps=fps if args.smooth else None) if args.track else None)
    smoother = LandmarkSmoother(fps) if args.smooth and not tracker else None
    target = output_path(args.out, f, root, ".mp4") if args.annotate else None
    writer, frame_no, n_faces, lines = None, 0, 0, []
    with contextlib.ExitStack() as stack:
        tmp = None
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(atomic_output(target, suffix=".mp4"))
        with tqdm(total=total, unit="frame", desc=f.name) as vbar:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                faces = tracker(frame) if tracker else detector(frame)
                if smoother:
                    faces = smoother(faces)
                n_faces += len(faces)
                lines.append(json.dumps({"path": str(f), "frame": frame_no,
                                         "faces": [x.as_dict() for x in faces]}) + "\n")
                if tmp is not None:
                    if writer is None:
                        h, w = frame.shape[:2]
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"),
                                                 fps, (w, h))
                    writer.write(draw(frame, faces))
                frame_no += 1
                vbar.update(1)
        cap.release()
        if writer is not None:
            writer.release()
        elif tmp is not None:
            tmp.touch()
    if frame_no == 0:
        failed.append(f"{f}: no frames could be read")
        return None
    if total and frame_no < total:
        failed.append(f"{f}: read {frame_no} of its {total} frames (corrupt?)")
        print(f"error: {failed[-1]}", file=sys.stderr)
    records.append(lines)
    return n_faces


if __name__ == "__main__":
    sys.exit(main())
