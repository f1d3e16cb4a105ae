#!/usr/bin/env python3
"""Inference speed (numbers printed, never asserted): ms per face for the landmark +
attribute net alone at batch 1 and batched, Caffe vs OpenCV backend; end to end with
Detector()'s defaults (MTCNN + landmarks + attributes) on the demo image, on 150x150 AFLW
faces and on a 640x480 photo of several faces, against stock Haar detection in the same
process; the video tracking mode's cost per frame; our Caffe's direct convolution against
the GEMM path and OpenCV (landmark net, S-Net). Several runs, medians, one process.

  tools/bench_inference.py --model models/tcdcn_5pt [--threads 1] [--json OUT]
  tools/bench_inference.py --model models/tcdcn_68pt --baseline models/tcdcn_5pt --json OUT

Threads: OMP_NUM_THREADS (our Caffe's fast paths and its OpenMP OpenBLAS), set from
--threads (default 1) before Caffe loads; CAFFE_FAST_CPU=0 measures upstream's CPU loops.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from tcdcn.paths import data_root
from tcdcn.timing import paired_rounds, timed

REPO = Path(__file__).resolve().parent.parent


def end_to_end_suite(args, det, astronaut) -> dict:
    """Detector() end to end on 150x150 AFLW faces and on a 640x480 photo of several faces,
    against stock OpenCV Haar detection (default parameters) in the same process, and the
    tracking mode's cost per frame between detections."""
    import cv2
    import numpy as np
    from tcdcn.video.tracking import Tracker
    root = data_root()
    listing = root / "MTFL" / "testing.txt"
    if listing.is_file():
        from tcdcn.data.datasets import read_mtfl
        paths = [s.image for s in read_mtfl(listing, root / "MTFL")[:args.faces]]
        images = [cv2.imread(str(p)) for p in paths]
        source = f"the first {len(images)} AFLW test images (MTFL testing.txt), 150x150"
    else:
        images = [cv2.resize(astronaut[40:240, 120:320], (150, 150))] * args.faces
        source = "the astronaut's face resized to 150x150 (no AFLW here)"
    haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def per_image(fn, imgs) -> float:
        return timed(lambda: [fn(im) for im in imgs], max(3, args.repeats // 2)) / len(imgs)

    greys = [cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in images]
    # paired rounds: each round times Haar on every image, then Detector() on every image,
    # so that both see the same state of a shared machine; the ratio is the median of the
    # rounds' ratios (one warm-up round first)
    rounds = [(h / len(images), e / len(images)) for h, e in paired_rounds(
        lambda: [haar.detectMultiScale(g) for g in greys], lambda: [det(im) for im in images],
        max(5, args.repeats))]
    t_haar = statistics.median(h for h, _ in rounds)
    t_e2e = statistics.median(e for _, e in rounds)
    ratios = [e / h for h, e in rounds]
    ratio = statistics.median(ratios)
    found = sum(len(det(im)) > 0 for im in images)
    out = {"end_to_end_150": {
        "images": source, "detector": repr(det), "ms_per_image": t_e2e * 1e3,
        "stock_haar_ms_per_image": t_haar * 1e3, "ratio_to_haar": ratio,
        "ratio_per_round": ratios, "images_with_a_face": found, "n_images": len(images)}}
    print(f"end to end on {source}: {t_e2e * 1e3:.2f} ms per image (a face found in {found} of "
          f"{len(images)}); stock Haar alone {t_haar * 1e3:.2f} ms: ratio {ratio:.3f} (median "
          f"of {len(rounds)} paired rounds, {min(ratios):.3f}-{max(ratios):.3f})")
    # where the time goes: each image timed alone (median of 3), so that a few slow images
    # (the turns, the classic search where S-Net finds no face) show apart from the rest
    each = np.array([timed(lambda im=im: det(im), 3) for im in images]) * 1e3
    slow = np.sort(each)[::-1][:max(1, len(each) // 100)]
    out["end_to_end_150"].update({
        "per_image_median_ms": float(np.median(each)),
        "per_image_median_ratio_to_haar": float(np.median(each)) / (t_haar * 1e3),
        "per_image_p99_ms": float(np.percentile(each, 99)),
        "slowest_1pct_ms": [float(v) for v in slow],
        "slowest_1pct_share_of_time": float(slow.sum() / each.sum())})
    print(f"  each image alone: median {np.median(each):.2f} ms (ratio "
          f"{np.median(each) / (t_haar * 1e3):.2f} to Haar's mean), 99th percentile "
          f"{np.percentile(each, 99):.1f} ms; the slowest 1% ({len(slow)} images: "
          f"{', '.join(f'{v:.1f}' for v in slow)} ms) take {slow.sum() / each.sum():.0%} of the time")
    from tcdcn.api import Detector

    def variant(key: str, label: str, retry_below: float | None = None, **kwargs):
        """Detector() with other settings on the same images: its time, ratio and finds
        (retry_below: the turns tried where the upright face scores under this)."""
        other = Detector(det.model.folder, batch=1, **kwargs)
        if retry_below is not None:
            other.detector.retry_below = retry_below
        t = per_image(other, images)
        found_other = sum(len(other(im)) > 0 for im in images)
        out["end_to_end_150"].update({f"{key}_ms_per_image": t * 1e3,
                                      f"{key}_ratio_to_haar": t / t_haar,
                                      f"{key}_images_with_a_face": found_other})
        print(f"  with Detector({label}): {t * 1e3:.2f} ms per image (found in {found_other}): "
              f"ratio {t / t_haar:.2f}")
        return other
    # a larger minimum face: a shorter pyramid
    variant("min_face_40", "min_face=40", min_face=40)
    # the turns tried where the upright face scores under 0.98 instead of 0.9 (more turned
    # faces found on validation, tools/turn_check.py): what it costs on upright photos
    variant("turn_retry_098", "turns where upright scores < 0.98", retry_below=0.98)
    # the classic cascade (P-Net + R-Net instead of S-Net), for comparison
    classic = variant("classic", "proposals='pnet'", proposals="pnet")
    # 640 x 480, several faces: a 4 x 3 grid of 150 x 150 faces, shrunk to fit
    tiles = [cv2.resize(im, (160, 160)) for im in (images * 12)[:12]]
    photo = np.vstack([np.hstack(tiles[r * 4:(r + 1) * 4]) for r in range(3)])
    t_photo = timed(lambda: det(photo), args.repeats)
    t_photo_haar = timed(lambda: haar.detectMultiScale(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)),
                         args.repeats)
    n_photo = len(det(photo))
    t_photo_classic = timed(lambda: classic(photo), args.repeats)
    out["end_to_end_640x480"] = {"faces_placed": 12, "faces_found": n_photo,
                                 "ms_per_image": t_photo * 1e3,
                                 "stock_haar_ms_per_image": t_photo_haar * 1e3,
                                 "classic_ms_per_image": t_photo_classic * 1e3,
                                 "classic_faces_found": len(classic(photo))}
    print(f"end to end on a 640x480 photo of 12 faces: {t_photo * 1e3:.1f} ms ({n_photo} "
          f"found); stock Haar alone {t_photo_haar * 1e3:.1f} ms")
    # tracking: a face sliding across 320x240 frames; cost of the frames between detections
    face = astronaut[40:200, 140:300]
    frames = []
    for k in range(60):
        f = np.full((240, 320, 3), 110, np.uint8)
        f[40:200, 20 + 2 * k // 3:180 + 2 * k // 3] = face
        frames.append(f)
    tracker = Tracker(det, redetect_every=1000)
    tracker(frames[0])
    follow = []
    for f in frames[1:]:
        start = time.perf_counter()
        tracker(f)
        follow.append(time.perf_counter() - start)
    t_track = statistics.median(follow)
    t_detect = timed(lambda: det(frames[0]), args.repeats)
    out["tracking"] = {"ms_per_face_per_frame": t_track * 1e3,
                       "detection_frame_ms": t_detect * 1e3,
                       "detections": tracker.stats.detections, "frames": tracker.stats.frames}
    print(f"tracking: {t_track * 1e3:.2f} ms per face per frame between detections "
          f"(a detection frame: {t_detect * 1e3:.2f} ms; {tracker.stats.detections} detections "
          f"in {tracker.stats.frames} frames)")
    return out


def mtcnn_fusion(args) -> dict:
    """MTCNN's nets through OpenCV dnn as tcdcn.detection.mtcnn loads them (layer fusion off) against
    OpenCV's default (its convolutions fused with the PReLUs after them): ms per forward and
    the ratio, on the shapes the default detector gives them (O-Net one crop, R-Net four,
    P-Net the first level of a 150x150 image's classic search), and whether the outputs
    agree to the bit."""
    import cv2
    import numpy as np
    from tcdcn.detection.mtcnn import ONET_OUTPUTS, MTCNNDetector
    from tcdcn.models import bundled
    with MTCNNDetector(backend="opencv").nets.use() as ours:   # this thread's nets
        pass
    folder = bundled("mtcnn")
    rng = np.random.default_rng(0)
    out = {}
    for i, name, shape, names in ((0, "pnet", (1, 3, 108, 108), ["prob1", "conv4-2"]),
                                  (1, "rnet", (4, 3, 24, 24), ["prob1", "conv5-2"]),
                                  (2, "onet", (1, 3, 48, 48), ONET_OUTPUTS)):
        fused = cv2.dnn.readNetFromCaffe(str(folder / f"det{i + 1}.prototxt"),
                                         str(folder / f"det{i + 1}.caffemodel"))
        x = rng.uniform(-1, 1, shape).astype(np.float32)

        def run(net):
            net.setInput(x)
            return net.forward(names)
        same = all(np.array_equal(a, b) for a, b in zip(run(ours[i]), run(fused)))
        t_ours = timed(lambda: [run(ours[i]) for _ in range(50)], args.repeats) / 50
        t_fused = timed(lambda: [run(fused) for _ in range(50)], args.repeats) / 50
        out[name] = {"shape": list(shape), "unfused_ms": t_ours * 1e3, "fused_ms": t_fused * 1e3,
                     "ratio": t_ours / t_fused, "same_outputs": same}
        print(f"MTCNN {name} {shape}: {t_ours * 1e3:.3f} ms unfused (as loaded) vs "
              f"{t_fused * 1e3:.3f} ms fused (OpenCV's default): ratio {t_ours / t_fused:.2f}, "
              f"outputs {'identical' if same else 'DIFFER'}")
    return out


def interleaved(runs: dict, repeats: int, loops: int = 50):
    """Each function's outputs and median seconds per call, timed in alternating rounds of
    `loops` calls (so that both sides see the same state of a shared machine)."""
    outs = {name: fn() for name, fn in runs.items()}   # and a warm-up
    samples = {name: [] for name in runs}
    for _ in range(max(repeats, 3)):
        for name, fn in runs.items():
            start = time.perf_counter()
            for _ in range(loops):
                fn()
            samples[name].append((time.perf_counter() - start) / loops)
    return outs, {name: statistics.median(v) for name, v in samples.items()}


def direct_conv(args, model_dir) -> dict:
    """Our Caffe's direct convolution (caffe_patches/0207) against the batched GEMM path it
    replaces, in this process: the landmark net as inference runs it (a face and its
    mirror, batch 2), the direct path switched on and off between rounds
    (caffe._caffe.set_direct_conv_enabled, patch 0208); and S-Net's two passes on a 150 px
    photo (120 px, and 64 px for the small level) in our Caffe against stock OpenCV dnn.
    ms per forward, ratios, and the largest output difference."""
    import caffe
    import numpy as np
    from tcdcn.detection.snet import SNetNet
    from tcdcn.landmarks import LandmarkModel
    rng = np.random.default_rng(0)
    model = LandmarkModel(model_dir, batch=2, backend="caffe")   # its input: 2 crops
    net = model.net
    net.blobs["data"].data[...] = rng.integers(0, 256, net.blobs["data"].data.shape)

    def forward(direct: bool):
        caffe._caffe.set_direct_conv_enabled(direct)
        return {k: v.copy() for k, v in net.forward().items()}
    try:
        outs, times = interleaved({"direct": lambda: forward(True),
                                   "gemm": lambda: forward(False)}, args.repeats)
    finally:
        caffe._caffe.set_direct_conv_enabled(True)
    diff = max(float(np.abs(outs["direct"][k] - outs["gemm"][k]).max()) for k in outs["gemm"])
    out = {"landmark_net_batch2": {"direct_ms": times["direct"] * 1e3,
                                   "gemm_ms": times["gemm"] * 1e3,
                                   "ratio": times["direct"] / times["gemm"],
                                   "max_output_difference": diff}}
    print(f"landmark net, batch 2 (a face and its mirror): {times['direct'] * 1e3:.3f} ms with "
          f"the direct convolution vs {times['gemm'] * 1e3:.3f} ms on the GEMM path: ratio "
          f"{times['direct'] / times['gemm']:.2f} (outputs within {diff:.1e})")
    big = ((rng.integers(0, 256, (1, 1, 120, 120)) - 127.5) / 128).astype(np.float32)
    small = ((rng.integers(0, 256, (1, 1, 64, 64)) - 127.5) / 128).astype(np.float32)
    runs = {}
    for backend in ("caffe", "opencv"):
        s = SNetNet(backend=backend)

        def both(s=s):
            with s.nets.use() as (large_net, small_net):   # this thread's two copies
                large_net.setInput(big)
                a = large_net.forward(["prob", "reg"])
                small_net.setInput(small)
                return list(a) + list(small_net.forward(["prob", "reg"]))
        runs[backend] = both
    outs, times = interleaved(runs, args.repeats)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(outs["caffe"], outs["opencv"]))
    out["snet_150px_photo"] = {"caffe_ms": times["caffe"] * 1e3,
                               "opencv_ms": times["opencv"] * 1e3,
                               "ratio": times["caffe"] / times["opencv"],
                               "max_output_difference": diff}
    print(f"S-Net, a 150 px photo's two passes: {times['caffe'] * 1e3:.3f} ms in our Caffe "
          f"(direct convolution) vs {times['opencv'] * 1e3:.3f} ms in OpenCV dnn: ratio "
          f"{times['caffe'] / times['opencv']:.2f} (outputs within {diff:.1e})")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--faces", type=int, default=200, help="AFLW images for the end-to-end run")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--baseline", type=Path,
                   help="another model folder timed the same way in this process (e.g. "
                        "models/tcdcn_5pt when --model is models/tcdcn_68pt): ratios printed")
    p.add_argument("--net-only", action="store_true",
                   help="only the landmark nets (and --baseline's): no detector, no end to end")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    import numpy as np
    cv2.setNumThreads(1)
    from tcdcn.api import Detector
    from tcdcn.landmarks import LandmarkModel
    from tcdcn.models import DEFAULT_MODEL
    model_dir = args.model or DEFAULT_MODEL

    def crops_for(model) -> np.ndarray:   # random crops at the model's input size
        return np.random.default_rng(0).integers(
            0, 256, (1024, 1, model.size, model.size)).astype(np.float32)

    shown = Path(model_dir).resolve()   # recorded relative to the project, like the flags
    if shown.is_relative_to(REPO):
        shown = shown.relative_to(REPO)
    results = {"model": str(shown), "threads": args.threads, "opencv_threads": 1,
               "fast_cpu_paths": os.environ.get("CAFFE_FAST_CPU", "1") != "0"}
    for backend in ("caffe", "opencv"):
        m1 = LandmarkModel(model_dir, batch=1, backend=backend)
        mb = LandmarkModel(model_dir, batch=256, backend=backend)
        flip = mb.flip
        crops = crops_for(m1)
        m1.flip = mb.flip = False     # one forward pass per face
        one = timed(lambda: m1.forward(crops[:100]), args.repeats) / 100
        many = timed(lambda: mb.forward(crops), args.repeats) / len(crops)
        mb.flip = True                # the model's test-time flip averaging: two passes
        many_flip = timed(lambda: mb.forward(crops), args.repeats) / len(crops)
        results[backend] = {"batch1_ms_per_face": one * 1e3, "batch256_ms_per_face": many * 1e3,
                            "batch256_faces_per_s": 1 / many,
                            "batch256_flip_ms_per_face": many_flip * 1e3,
                            "model_uses_flip": flip}
        print(f"{backend:6s} net only: batch 1 {one * 1e3:.3f} ms/face; batch 256 "
              f"{many * 1e3:.4f} ms/face = {1 / many:,.0f} faces/s; with flip averaging "
              f"{many_flip * 1e3:.4f} ms/face")
        if args.baseline:
            b1 = LandmarkModel(args.baseline, batch=1, backend=backend)
            bb = LandmarkModel(args.baseline, batch=256, backend=backend)
            b1.flip = bb.flip = mb.flip = False   # one pass per face, both models
            base_crops = crops_for(b1)
            # paired rounds (model, baseline, model, ...): the ratio is the median of the
            # rounds' ratios, so both see the same state of a shared machine
            r1 = paired_rounds(lambda: m1.forward(crops[:100]),
                               lambda: b1.forward(base_crops[:100]), max(7, args.repeats))
            rb = paired_rounds(lambda: mb.forward(crops), lambda: bb.forward(base_crops),
                               max(7, args.repeats))
            base_one = statistics.median(b for _, b in r1) / 100
            base_many = statistics.median(b for _, b in rb) / len(base_crops)
            ratio_one = statistics.median(a / b for a, b in r1)
            ratio_many = statistics.median(a / b for a, b in rb)
            results[backend]["baseline"] = {
                "model": str(args.baseline), "batch1_ms_per_face": base_one * 1e3,
                "batch256_ms_per_face": base_many * 1e3,
                "ratio_batch1": ratio_one, "ratio_batch256": ratio_many}
            print(f"{'':6s} baseline {args.baseline}: batch 1 {base_one * 1e3:.3f} ms/face "
                  f"(paired ratio {ratio_one:.2f}); batch 256 {base_many * 1e3:.4f} ms/face "
                  f"(paired ratio {ratio_many:.2f})")
    results["opencv_over_caffe_batch1"] = (results["opencv"]["batch1_ms_per_face"]
                                           / results["caffe"]["batch1_ms_per_face"])
    if args.net_only:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    results["mtcnn_unfused"] = mtcnn_fusion(args)
    from tcdcn.models import default_backend
    if default_backend() == "caffe":
        results["direct_conv"] = direct_conv(args, model_dir)
    import skimage.data
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    det = Detector(model_dir, batch=1)
    faces = det(image)
    end_to_end = timed(lambda: det(image), args.repeats)
    detect_only = timed(lambda: det.detect(image), args.repeats)
    results["end_to_end"] = {"image": "skimage astronaut 512x512", "faces": len(faces),
                             "ms_per_image": end_to_end * 1e3, "detector_ms": detect_only * 1e3}
    print(f"end to end on a 512x512 image ({len(faces)} face): {end_to_end * 1e3:.1f} ms, of which "
          f"detection {detect_only * 1e3:.1f} ms")
    results.update(end_to_end_suite(args, det, image))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
