"""The numbers tables of a released model, printed from its model.json (the numbers
training.release measured) so that the docs are regenerated, never typed."""
from __future__ import annotations

from pathlib import Path

from tcdcn.detection.factory import crop_placement
from tcdcn.evaluation.evaluate import numbers_key

DETECTOR_ROWS = [  # suffix of the key, label
    ("haar_boxes", "Haar boxes"),
    ("mtcnn_boxes", "MTCNN box"),
    ("mtcnn_boxes_refined", "MTCNN box, re-centred"),
    ("mtcnn_points", "MTCNN points"),
    ("mtcnn_points_refined", "MTCNN points, re-centred"),
]
ROWS = [  # (key in model.json's numbers, label)
    ("validation_list_boxes", "validation, CNN_FacePoint boxes"),
    *[(f"validation_{k}", f"validation, {label}") for k, label in DETECTOR_ROWS],
    ("aflw_landmark_boxes", "**AFLW, boxes from the landmarks**"),
    *[(f"aflw_{k}", f"AFLW, {label}") for k, label in DETECTOR_ROWS],
]
TASKS = ("gender", "smile", "glasses", "pose")


def rows(meta: dict) -> list[str]:
    numbers = meta["numbers"]
    out = ["| set, boxes | faces (missed) | NME % | FR@10 % | AUC@10 | "
           + " | ".join(TASKS) + " |",
           "|---|---|---|---|---|" + "---|" * len(TASKS)]
    for key, label in ROWS:
        r = numbers.get(key)
        if not r or r.get("nme_mean") is None:
            continue
        faces = f"{r['n_faces']:,}" + (f" ({r['misses']})" if r["misses"] else "")
        attrs = [f"{r['attributes'][t]['accuracy']:.1f}" if t in r.get("attributes", {}) else "—"
                 for t in TASKS]
        label = label_default(meta, key, label)
        out.append(f"| {label} | {faces} | {r['nme_mean']:.2f} | {r['failure_rate']:.1f} | "
                   f"{r['auc_10']:.3f} | " + " | ".join(attrs) + " |")
    aflw = numbers.get("aflw_landmark_boxes")
    if aflw and aflw.get("attributes"):
        out.append("| majority class (AFLW) | | | | | " + " | ".join(
            f"{aflw['attributes'][t]['majority_baseline']:.1f}" for t in TASKS) + " |")
    return out


ROWS_68 = [
    ("validation_landmarks_boxes", "validation, boxes from the landmarks"),
    *[(f"validation_{k}", f"validation, {label}") for k, label in DETECTOR_ROWS],
]


def default_detector_key(meta: dict, prefix: str) -> str:
    """The numbers' key of the default detector path (MTCNN as model.json chose it)."""
    return numbers_key(prefix, "mtcnn", crop_placement(meta, "mtcnn"), meta.get("refine", 0))


def label_default(meta: dict, key: str, label: str) -> str:
    prefix = key.split("_", 1)[0]
    return label + " (**default**)" if key == default_detector_key(meta, prefix) else label
REGIONS = ("jaw", "brows", "nose", "eyes", "mouth")


def rows_68(meta: dict) -> list[str]:
    """68 points: NME by the outer eye corners and by the pupils, and per region."""
    out = ["| set, boxes | faces (missed) | NME % (outer corners) | NME % (inter-pupil) | "
           "FR@10 % | AUC@10 | " + " | ".join(REGIONS) + " |",
           "|---|---|---|---|---|---|" + "---|" * len(REGIONS)]
    for key, label in ROWS_68:
        r = meta["numbers"].get(key)
        if not r or r.get("nme_mean") is None:
            continue
        faces = f"{r['n_faces']:,}" + (f" ({r['misses']})" if r["misses"] else "")
        label = label_default(meta, key, label)
        out.append(f"| {label} | {faces} | {r['nme_mean']:.2f} | "
                   f"{r['inter_pupil']['nme_mean']:.2f} | {r['failure_rate']:.1f} | "
                   f"{r['auc_10']:.3f} | "
                   + " | ".join(f"{r['per_region'][g]:.2f}" for g in REGIONS) + " |")
    return out


def stage_rows(log: dict, caps: dict) -> list[str]:
    """One row per training stage from the model's training_log.json."""
    out = ["| stage | iterations run (cap) | ended by | best validation (iteration) | "
           "val landmark loss there | val accuracy there (gender / smile / glasses / pose) |",
           "|---|---|---|---|---|---|"]
    for name, st in log.items():
        tests = [t for t in st.get("tests", []) if t.get("measure") is not None]
        if not tests:
            continue
        best = next(t for t in tests if t["iter"] == st["best_iter"])
        acc = " / ".join(f"{100 * best[f'{t}_accuracy']:.1f}" if f"{t}_accuracy" in best else "—"
                         for t in TASKS)
        cap = f"{caps[name]:,}" if name in caps else "?"
        out.append(f"| {name} | {tests[-1]['iter']:,} ({cap}) | "
                   f"{'stop rule' if st.get('stopped_by_rule') else 'cap'} | "
                   f"{st['measure']} {st['best_measure']:.5g} ({st['best_iter']:,}) | "
                   f"{best.get('landmark_loss', float('nan')):.5f} | {acc} |")
    return out




# ---- speed tables (tools/speed_table.py) ----


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


