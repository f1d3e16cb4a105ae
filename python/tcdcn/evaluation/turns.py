"""The turn retry (search.Turned: quarter turns, and tilts of 30 degrees) measured on
validation data only (never the test set): the numbers behind search.DEFAULT_TURNS' quarter
turns and its cost on face-free images (tools/turn_check.py is the command line)."""
from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from tcdcn.api import Detector
from tcdcn.boxes import five_points
from tcdcn.data.detector_sets import detector_validation_sets
from tcdcn.detection.factory import DetectorSettings, make_detector
from tcdcn.evaluation.evaluate import boxes_for, evaluate, load_images
from tcdcn.geometry import apply_matrix, turn_image, turn_matrix
from tcdcn.landmarks import LandmarkModel
from tcdcn.paths import checkout

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
    out = []
    for i, s in enumerate(samples):
        image = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{s.image}: cannot read the image")
        path = folder / f"{angle}_{i}.png"
        cv2.imwrite(str(path), turn_image(image, angle))
        out.append(replace(s, image=path,
                           landmarks=apply_matrix(turn_matrix(angle, image.shape), s.landmarks),
                           box=None, extra=dict(s.extra)))
    return out


def face_free_images(tiles: int, seed: int):
    from skimage import (
        data as skdata,  # a test-time dependency: only this check needs it
    )
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


def turn_check(model_dir: Path, root: Path, faces: int = 300, tiles: int = 10, seed: int = 0,
               log=print) -> dict:
    """Faces missed and NME on validation faces turned each way, MTCNN's best scores at
    the right and wrong turns, and detections and time on face-free images, per SETTINGS."""
    model = LandmarkModel(model_dir)
    sets = detector_validation_sets(root)
    repo = checkout()
    report = {"model": str(model_dir.relative_to(repo) if repo and model_dir.is_relative_to(repo)
                           else model_dir), "faces": {}, "face_free": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, samples in sets.items():
            step = max(1, len(samples) // faces)
            samples = sets[set_name] = samples[::step][:faces]
            for s in samples:   # 300-W: the five points of the 68 (boxes.five_points)
                s.landmarks = five_points(s.landmarks)
            for angle in (0, 90, 180, 270):
                folder = Path(tmp) / f"{len(report['faces'])}_{angle}"
                folder.mkdir()
                turned = turned_samples(samples, angle, folder)
                _, colour = load_images(turned, True)
                for setting, (turns, retry_below) in SETTINGS.items():
                    settings = DetectorSettings(turns=turns, turn_retry_below=retry_below)
                    boxes = boxes_for(turned, "detector", make_detector(model, settings), colour)
                    r = evaluate(model, turned, "detector", settings, boxes=boxes)
                    row = {"set": set_name, "turned": angle, "setting": setting,
                           "faces": r["n_faces"], "missed": r["misses"],
                           "nme_found": r["nme_mean"], "failure_rate": r["failure_rate"]}
                    report["faces"][f"{set_name} | {angle} | {setting}"] = row
                    log(f"{set_name}, turned {angle:3d}: {setting}: missed {row['missed']} of "
                          f"{row['faces']}, NME {row['nme_found'] or float('nan'):.2f}% "
                          f"(found faces), FR@10 {row['failure_rate']:.1f}%")
    images = face_free_images(tiles, seed)
    # best scores per turn: faces (right turn / wrong turns) and face-free images
    inner = make_detector(model, DetectorSettings(turns=()))
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
        log(f"best score, {name}: {row}")
    for setting, (turns, retry_below) in SETTINGS.items():
        det = Detector(model_dir, turns=turns, turn_retry_below=retry_below)
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
        log(f"face-free images ({len(images)}): {setting}: {found} detections on "
            f"{len(fired)} images {fired}; {1e3 * np.mean(times):.1f} ms per image (mean)")
    return report
