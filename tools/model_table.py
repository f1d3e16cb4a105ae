#!/usr/bin/env python3
"""The README's numbers table of a released model, printed from its model.json (the numbers
tools/release_model.py measured), so that the README can be regenerated, never typed.

  tools/model_table.py --model models/tcdcn_5pt [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
    from tcdcn.evaluation import crop_placement, numbers_key
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    args = p.parse_args(argv)
    meta = json.loads((args.model / "model.json").read_text())
    print("\n".join(rows_68(meta) if meta["landmark_scheme"] == "68pt" else rows(meta)))
    aflw = meta["numbers"].get("aflw_landmark_boxes")
    if aflw:
        print("\nPer landmark on AFLW (landmark-derived boxes): " + ", ".join(
            f"{k.replace('_', ' ')} {v:.2f}" for k, v in aflw["per_landmark"].items()) + " (% NME).")
        print("Confusion matrices on AFLW (rows: truth, columns: prediction): " + "; ".join(
            f"{t} {aflw['attributes'][t]['confusion']}" for t in TASKS if t in aflw["attributes"]) + ".")
    log_path = args.model / "training_log.json"
    if log_path.is_file():
        caps = meta["training"].get("caps", {})
        print()
        print("\n".join(stage_rows(json.loads(log_path.read_text()), caps)))
    print(f"\nInference: crop scale {meta['input'].get('crop_scale', 1.0):g}, "
          f"test-time flip {'on' if meta.get('test_time_flip') else 'off'}, "
          f"refine {meta.get('refine', 0)} (chosen on validation).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
