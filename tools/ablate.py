#!/usr/bin/env python3
"""Ablations on one LMDB with one reduced budget: each variant trained by tools/train.py and
measured on the validation split only (never the test set). Resumable: finished variants
are skipped.

  tools/ablate.py --lmdb LMDB_DIR --out runs/ablation --max-iter 600 300 300

Writes OUT/ablations.json and OUT/ablations.md (a table for the README).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

VARIANTS = {
    "baseline (multi-task, staged, LC conv4, tanh, no ReLU after MVN)": [],
    "landmarks alone": ["--landmarks-only"],
    "unstaged (multi-task throughout)": ["--unstaged"],
    "conv4 = Convolution (tied weights)": ["--conv4", "convolution"],
    "absolute tanh": ["--activation", "abs_tanh"],
    "linear landmark output": ["--activation", "linear"],
    "ReLU after MVN (the write-up)": ["--relu-after-norm"],
    "1.5x wider trunk": ["--width", "1.5"],
    "2x wider trunk": ["--width", "2"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lmdb", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-iter", type=int, nargs=3, default=(600, 300, 300))
    p.add_argument("--test-interval", type=int, default=150)
    p.add_argument("--lr", type=float, default=None, help="default: train.py's")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", nargs="*", help="variant name prefixes to run")
    p.add_argument("--root", type=Path, help="data root, passed to release_model.py")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "ablations.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    py = sys.executable
    for i, (name, flags) in enumerate(VARIANTS.items()):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        if name in results:
            print(f"done earlier: {name}")
            continue
        run = args.out / f"v{i}"
        budget = list(args.max_iter)
        if "--unstaged" in flags:        # the same total iterations in one stage
            budget = [sum(budget), 1, 1]
        if "--landmarks-only" in flags:  # stage 1's share goes to landmark training
            budget = [1, budget[0] + budget[1], budget[2]]
        cmd = [py, str(REPO / "tools" / "train.py"), "--lmdb", str(args.lmdb), "--run", str(run),
               "--max-iter", *map(str, budget), "--test-interval", str(args.test_interval),
               *(["--lr", str(args.lr)] if args.lr is not None else []),
               "--seed", str(args.seed), *flags]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        model = run / "model"
        subprocess.run([py, str(REPO / "tools" / "release_model.py"), "--run", str(run), "--out",
                        str(model), "--calibration-faces", "0", "--validation-only",
                        *(["--root", str(args.root)] if args.root else [])], check=True,
                       stdout=subprocess.DEVNULL)
        val = json.loads((model / "model.json").read_text())["numbers"]["validation_list_boxes"]
        state = json.loads((run / "state.json").read_text())
        results[name] = {"flags": flags, "budget": budget, "seed": args.seed,
                         "val_nme": val["nme_mean"], "val_fr10": val["failure_rate"],
                         "val_auc10": val["auc_10"],
                         "best_landmark_loss": min(s["best_measure"] for s in state["stages"].values()
                                                   if s.get("measure") == "landmark"),
                         "attributes": {k: v["accuracy"] for k, v in val.get("attributes", {}).items()}}
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{name}: validation NME {val['nme_mean']:.2f}%", flush=True)
    lines = ["| variant | val NME % | val FR@10 % | val AUC@10 | best val landmark loss |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['val_nme']:.2f} | {r['val_fr10']:.1f} | {r['val_auc10']:.3f} "
                     f"| {r['best_landmark_loss']:.5f} |")
    (args.out / "ablations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
