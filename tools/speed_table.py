#!/usr/bin/env python3
"""The README's speed tables, printed from the JSON of tools/bench_train.py and
tools/bench_inference.py (so the README can be regenerated, never typed).

  tools/speed_table.py --train benchmarks/bench_train.json \
      --inference benchmarks/bench_inference.json benchmarks/bench_inference_upstream.json \
      --end-to-end benchmarks/bench_inference.json benchmarks/bench_inference_68pt.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def train_rows(report: dict) -> list[str]:
    out = ["| configuration (batch 256) | ms / iteration | samples/s | vs before | "
           "sgemm GFLOP/s (same process) | share of the machine's limit |",
           "|---|---|---|---|---|---|"]
    for r in report["results"]:
        out.append(f"| {r['label']} | {r['ms_per_iter']:.1f} | {r['samples_per_s']:,.0f} | "
                   f"{r['ratio_to_baseline']:.2f}x | {r['sgemm_gflops']:.0f} | "
                   f"{100 * r['efficiency']:.1f}% |")
    return out


def layer_rows(report: dict) -> list[str]:
    results = report["results"]
    base = results[0]
    best = max(results, key=lambda r: r["samples_per_s"])
    out = [f"| layer | before: forward / backward ms | now: forward / backward ms |",
           "|---|---|---|"]
    for a, b in zip(base["layers"], best["layers"]):
        if max(a["forward_ms"], a["backward_ms"]) < 1.0:
            continue
        out.append(f"| {a['name']} ({a['type']}) | {a['forward_ms']:.1f} / {a['backward_ms']:.1f} "
                   f"| {b['forward_ms']:.1f} / {b['backward_ms']:.1f} |")
    return out


def inference_rows(reports: list[dict]) -> list[str]:
    out = ["| one core | CPU paths | batch 1 | batch 256 | batch 256, flip averaging (2 passes) |",
           "|---|---|---|---|---|"]
    for rep in reports:
        paths = "fast" if rep.get("fast_cpu_paths", True) else "upstream"
        for backend, label in (("caffe", "our Caffe"), ("opencv", "stock OpenCV dnn (export)")):
            if backend == "opencv" and paths == "upstream":
                continue   # OpenCV does not use our Caffe
            r = rep[backend]
            flip = r.get("batch256_flip_ms_per_face")
            out.append(f"| {label} | {paths if backend == 'caffe' else '—'} "
                       f"| {r['batch1_ms_per_face']:.3f} ms/face | {r['batch256_ms_per_face']:.3f} "
                       f"ms/face ({r['batch256_faces_per_s']:,.0f} faces/s) | "
                       + (f"{flip:.3f} ms/face |" if flip else "— |"))
    return out


def end_to_end_rows(reports: list[dict]) -> list[str]:
    """Detector() end to end (bench_inference.py's end-to-end suite), one row per report."""
    out = ["| model | 150x150 AFLW images: ms per image (faces found) | stock Haar alone | ratio "
           "(paired rounds' range) "
           "| median image: ms, ratio (slowest 1%: share of the time) | the same, min_face=40 | the same, classic cascade (proposals='pnet') "
           "| 640x480, 12 faces: ms (found) | classic cascade | stock Haar alone "
           "| tracking: ms per face per frame |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        e, w, tr = rep.get("end_to_end_150"), rep.get("end_to_end_640x480"), rep.get("tracking")
        if not e:
            continue
        out.append(f"| {Path(rep.get('model', '?')).name} | {e['ms_per_image']:.2f} "
                   f"({e['images_with_a_face']} of {e['n_images']}) | "
                   f"{e['stock_haar_ms_per_image']:.2f} | {e['ratio_to_haar']:.3f}x"
                   + (f" ({min(e['ratio_per_round']):.3f}-{max(e['ratio_per_round']):.3f})"
                      if "ratio_per_round" in e else "") + " | "
                   + (f"{e['per_image_median_ms']:.2f}: {e['per_image_median_ratio_to_haar']:.2f}x "
                      f"({e['slowest_1pct_share_of_time']:.0%}) | "
                      if "per_image_median_ms" in e else "— | ")
                   + (f"{e['min_face_40_ms_per_image']:.2f} ({e['min_face_40_images_with_a_face']}): "
                      f"{e['min_face_40_ratio_to_haar']:.2f}x | "
                      if "min_face_40_ms_per_image" in e else "— | ")
                   + (f"{e['classic_ms_per_image']:.2f} ({e['classic_images_with_a_face']}): "
                      f"{e['classic_ratio_to_haar']:.2f}x | "
                      if "classic_ms_per_image" in e else "— | ")
                   + f"{w['ms_per_image']:.1f} ({w['faces_found']}) | "
                   + (f"{w['classic_ms_per_image']:.1f} ({w['classic_faces_found']}) | "
                      if "classic_ms_per_image" in w else "— | ")
                   + f"{w['stock_haar_ms_per_image']:.1f} | {tr['ms_per_face_per_frame']:.2f} |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path)
    p.add_argument("--inference", type=Path, nargs="*", default=[])
    p.add_argument("--end-to-end", type=Path, nargs="*", default=[],
                   help="bench_inference.py JSONs with the end-to-end suite, one row each")
    args = p.parse_args(argv)
    if args.train:
        report = json.loads(args.train.read_text())
        print("\n".join(train_rows(report)) + "\n")
        print("\n".join(layer_rows(report)) + "\n")
    if args.inference:
        print("\n".join(inference_rows([json.loads(f.read_text()) for f in args.inference])))
    if args.end_to_end:
        print("\n" + "\n".join(end_to_end_rows([json.loads(f.read_text())
                                                 for f in args.end_to_end])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
