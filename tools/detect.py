#!/usr/bin/env python3
"""Find faces, their landmarks and attributes in images, folders or videos.

  tools/detect.py photo.jpg folder/ clip.mp4 --out detect_out --annotate [--smooth]

Writes one JSON line per image or video frame to OUT/faces.jsonl (path, frame, faces with
box, score, landmarks and attributes); with --annotate also annotated images (OUT/<name>.png)
and videos (OUT/<name>.mp4). --boxes FILE supplies boxes instead of the detector (lines:
`image left top right bottom`). Bad files are reported and skipped; the exit code is 1 if
any failed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="images, folders (searched) or videos")
    p.add_argument("--out", type=Path, default=Path("detect_out"))
    p.add_argument("--model", type=Path, help="model folder (default models/tcdcn_5pt)")
    p.add_argument("--backend", choices=("caffe", "opencv"), default="caffe")
    p.add_argument("--detector", choices=("haar", "mtcnn"), default="haar")
    p.add_argument("--mtcnn", type=Path, help="folder with the MTCNN det1-3 models (not shipped)")
    p.add_argument("--boxes", type=Path, help="boxes file instead of the detector")
    p.add_argument("--batch", type=int, default=64, help="images per batch")
    p.add_argument("--pad", type=float, default=0.0,
                   help="border added before detection (e.g. 0.25 for tight face crops)")
    p.add_argument("--annotate", action="store_true", help="write annotated images/videos")
    p.add_argument("--smooth", action="store_true", help="one-euro smoothing in videos")
    return p.parse_args(argv)


def expand(inputs: list[Path]) -> list[Path]:
    files = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXT | VIDEO_EXT)
        else:
            files.append(path)
    return files


def read_boxes(path: Path) -> dict[str, list[list[float]]]:
    boxes = defaultdict(list)
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        try:
            if len(fields) != 5:
                raise ValueError
            boxes[str(Path(fields[0]))].append([float(v) for v in fields[1:]])
        except ValueError:
            raise SystemExit(f"error: {path}:{lineno}: expected 'image left top right bottom'")
    return boxes


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    from tqdm import tqdm
    from tcdcn.api import DEFAULT_MODEL, Detector, draw, load_image
    from tcdcn.smoothing import LandmarkSmoother

    detector = Detector(args.model or DEFAULT_MODEL, batch=args.batch, detector=args.detector,
                        mtcnn=args.mtcnn, backend=args.backend, pad=args.pad)
    given = read_boxes(args.boxes) if args.boxes else None
    args.out.mkdir(parents=True, exist_ok=True)
    files = expand(args.inputs)
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
            if given is not None:
                results = [detector(im, boxes=given.get(str(f), [])) for f, im in loaded]
            else:
                results = detector.batch([im for _, im in loaded])
            for (f, im), faces in zip(loaded, results):
                n_faces += len(faces)
                jsonl.write(json.dumps({"path": str(f), "faces": [x.as_dict() for x in faces]}) + "\n")
                if args.annotate:
                    cv2.imwrite(str(args.out / f"{f.stem}.png"), draw(im, faces))
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
            smoother = LandmarkSmoother(fps) if args.smooth else None
            writer, frame_no = None, 0
            with tqdm(total=total, unit="frame", desc=f.name) as vbar:
                while True:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    faces = detector(frame)
                    if smoother:
                        faces = smoother(faces)
                    n_faces += len(faces)
                    jsonl.write(json.dumps({"path": str(f), "frame": frame_no,
                                            "faces": [x.as_dict() for x in faces]}) + "\n")
                    if args.annotate:
                        if writer is None:
                            h, w = frame.shape[:2]
                            writer = cv2.VideoWriter(str(args.out / f"{f.stem}.mp4"),
                                                     cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                        writer.write(draw(frame, faces))
                    frame_no += 1
                    vbar.update(1)
            cap.release()
            if writer is not None:
                writer.release()
            if frame_no == 0:
                failed.append(f"{f}: no frames could be read")
    summary = {"inputs": len(files), "failed": len(failed), "faces": n_faces, "errors": failed}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(files) - len(failed)} of {len(files)} inputs processed, {n_faces} faces; "
          f"{len(failed)} failed. Wrote {args.out / 'faces.jsonl'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
