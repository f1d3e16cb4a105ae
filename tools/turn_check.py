#!/usr/bin/env python3
"""The turn retry (detect.Turned: quarter turns, and tilts of 30 degrees) measured on
validation data only (never the test set): the numbers behind detect.DEFAULT_TURNS' quarter
turns and its cost on face-free images (tools/mtcnn_recall.py measures the tilts on rolled
faces).

  tools/turn_check.py --json benchmarks/turn_check.json [--faces 300] [--tiles 10]

- Faces: every k-th face of 300-W (AFW + HELEN train) and of the non-frontal MTFL training
  faces that S-Net did not learn from (the validation sets of tools/mtcnn_recall.py:
  evaluation.detector_validation_sets), each image turned by 0, 90, 180 and
  270 degrees (points turned with it), run end to end as Detector() runs them with the
  retry off and on: faces missed and NME (inter-ocular, found faces).
- Scores: MTCNN's best score (with Detector()'s borders) on those faces turned, at the
  turn that makes them upright and at the two others, and on the face-free images at each
  turn: the basis of detect.TURN_MIN_SCORE.
- Face-free images: scikit-image's sample images without a face, whole and as random
  150x150 tiles: detections (false positives) and milliseconds per image, retry off and on
  (on such images every turn costs one more detection).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# scikit-image sample images without a (human) face
FACE_FREE = ("brick", "cell", "chessboard_GRAY", "clock_motion", "coffee", "coins", "color",
             "grass", "gravel", "horse", "hubble_deep_field", "ihc", "logo", "microaneurysms",
             "moon", "motorcycle_left", "page", "phantom", "retina", "rocket", "text")
# (turns, retry_below): the turns are tried where the upright image's best face scores under
# retry_below (0: only where it has no face at all)
SETTINGS = {"upright only": ((), 0.0),
            "quarter turns where upright scores < 0.9 (before)": ((90, 180, 270), 0.9),
            "turned where upright scores < 0.9 (default: + tilts 30)": ("auto", 0.9),
            "turned where upright scores < 0.98": ("auto", 0.98)}


def turned_samples(samples, angle: int, folder: Path):
    """Copies of the samples whose images (written to folder) and points are turned."""
    import cv2
    from dataclasses import replace
    from tcdcn.augment import apply_matrix
    from tcdcn.detect import turn_image, turn_matrix
    out = []
    for i, s in enumerate(samples):
        image = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"error: {s.image}: cannot read the image")
        path = folder / f"{angle}_{i}.png"
        cv2.imwrite(str(path), turn_image(image, angle))
        out.append(replace(s, image=path,
                           landmarks=apply_matrix(turn_matrix(angle, image.shape), s.landmarks),
                           box=None, extra=dict(s.extra)))
    return out


def face_free_images(tiles: int, seed: int):
    import cv2
    from skimage import data as skdata
    from skimage import io
    root = Path(skdata.__file__).parent
    rng = np.random.default_rng(seed)
    images = {}
    for name in FACE_FREE:
        files = sorted(root.glob(name + ".*"))
        if not files:
            continue
        im = io.imread(str(files[0]))
        im = im[..., :3] if im.ndim == 3 else im
        im = np.ascontiguousarray(im.astype(np.uint8))
        bgr = im if im.ndim == 2 else cv2.cvtColor(im, cv2.COLOR_RGB2BGR)
        images[f"{name} (whole)"] = bgr
        h, w = bgr.shape[:2]
        for t in range(tiles if min(h, w) > 150 else 0):
            y, x = int(rng.integers(0, h - 150)), int(rng.integers(0, w - 150))
            images[f"{name} tile {t}"] = bgr[y:y + 150, x:x + 150].copy()
    return images


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(os.environ.get("TCDCN_DATA", "../shared/data")))
    p.add_argument("--model", type=Path, default=REPO / "models" / "tcdcn_5pt")
    p.add_argument("--faces", type=int, default=300, help="faces per validation set (evenly spaced)")
    p.add_argument("--tiles", type=int, default=10, help="150x150 tiles per face-free image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    cv2.setNumThreads(1)
    from tqdm import tqdm
    from tcdcn.api import Detector
    from tcdcn.boxes import five_points
    from tcdcn.detect import turn_image
    from tcdcn.evaluation import boxes_for, detector_validation_sets, evaluate, load_images, \
        make_detector
    from tcdcn.inference import LandmarkModel
    model = LandmarkModel(args.model)
    sets = detector_validation_sets(args.root)
    report = {"tool": "tools/turn_check.py", "argv": argv if argv is not None else sys.argv[1:],
              "model": str(args.model.relative_to(REPO) if args.model.is_relative_to(REPO)
                           else args.model), "faces": {}, "face_free": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, samples in sets.items():
            step = max(1, len(samples) // args.faces)
            samples = sets[set_name] = samples[::step][:args.faces]
            for s in samples:   # 300-W: the five points of the 68 (boxes.five_points)
                s.landmarks = five_points(s.landmarks)
            for angle in (0, 90, 180, 270):
                folder = Path(tmp) / f"{len(report['faces'])}_{angle}"
                folder.mkdir()
                turned = turned_samples(samples, angle, folder)
                _, colour = load_images(turned, True)
                for setting, (turns, retry_below) in SETTINGS.items():
                    det = make_detector(model, "mtcnn", turns=turns)
                    det.retry_below = retry_below
                    boxes = boxes_for(turned, "detector", det, colour)
                    r = evaluate(model, turned, "detector", boxes=boxes, turns=turns)
                    row = {"set": set_name, "turned": angle, "setting": setting,
                           "faces": r["n_faces"], "missed": r["misses"],
                           "nme_found": r["nme_mean"], "failure_rate": r["failure_rate"]}
                    report["faces"][f"{set_name} | {angle} | {setting}"] = row
                    print(f"{set_name}, turned {angle:3d}: {setting}: missed {row['missed']} of "
                          f"{row['faces']}, NME {row['nme_found'] or float('nan'):.2f}% "
                          f"(found faces), FR@10 {row['failure_rate']:.1f}%", flush=True)
    images = face_free_images(args.tiles, args.seed)
    # best scores per turn: faces (right turn / wrong turns) and face-free images
    inner = make_detector(model, "mtcnn", turns=())
    right, wrong, free = [], [], []
    for set_name, samples in sets.items():
        for s in samples:   # the evenly spaced faces chosen above
            image = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
            for shown in (90, 180, 270):
                turned = turn_image(image, shown)
                for turn in (90, 180, 270):
                    _, sc = inner(turn_image(turned, turn))
                    best = float(np.max(sc)) if len(sc) else 0.0
                    (right if (shown + turn) % 360 == 0 else wrong).append(best)
    for image in images.values():
        for turn in (90, 180, 270):
            _, sc = inner(turn_image(image, turn))
            free.append(float(np.max(sc)) if len(sc) else 0.0)
    report["scores"] = {}
    for name, v in (("right turn", right), ("wrong turns", wrong), ("face-free, turned", free)):
        v = np.array(v)
        row = {"n": int(len(v)), "found": int((v > 0).sum()),
               **{f">= {t}": int((v >= t).sum()) for t in (0.9, 0.95, 0.98, 0.99, 0.995)}}
        report["scores"][name] = row
        print(f"best score, {name}: {row}", flush=True)
    for setting, (turns, retry_below) in SETTINGS.items():
        det = Detector(args.model, turns=turns)
        det.detector.retry_below = retry_below
        found, times, fired = 0, [], []
        for name, image in tqdm(images.items(), desc=setting, leave=False):
            t = time.perf_counter()
            faces = det(image)
            times.append(time.perf_counter() - t)
            found += len(faces)
            if faces:
                fired.append(name)
        report["face_free"][setting] = {
            "images": len(images), "detections": found, "images_with_detections": fired,
            "ms_per_image_mean": 1e3 * float(np.mean(times)),
            "ms_per_image_median": 1e3 * float(np.median(times))}
        print(f"face-free images ({len(images)}): {setting}: {found} detections on "
              f"{len(fired)} images {fired}; {1e3 * np.mean(times):.1f} ms per image (mean)",
              flush=True)
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
