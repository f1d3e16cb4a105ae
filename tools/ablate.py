#!/usr/bin/env python3
"""Ablations on one LMDB with one reduced budget: each variant trained by tools/train.py and
measured on the validation split only (never the test set). Resumable: finished variants
are skipped.

  tools/ablate.py --lmdb LMDB_DIR --out runs/ablation --max-iter 600 300 300
  tools/ablate.py --suite 68pt --lmdb lmdb/300w_3m --out runs/abl68 --max-iter 1 2000 1000 \
      --test-interval 250 [--aux-lmdb lmdb/mtfl_1m]
  tools/ablate.py --suite 5pt-loss --lmdb lmdb/mtfl_12m_pw3 --out runs/abl_loss \
      --max-iter 1 1 3000 --test-interval 500
  tools/ablate.py --suite 5pt-data --out runs/abl_data --max-iter 2000 1000 1000 \
      --test-interval 500 [--seed 2 --only PREFIX ...]

--suite 5pt-data builds each variant's LMDB itself (make_lmdb.py, --lmdb-samples records,
--lmdb-seed) under OUT/, so no --lmdb is given; a --seed other than 1 adds results named
"VARIANT [seed N]" beside the first.

Writes OUT/ablations.json and OUT/ablations.md (a table for the README).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from tcdcn.paths import atomic_write, data_root

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
# 68 points (an LMDB of 300-W faces: landmarks only, so two stages: landmarks, finetune)
FIVE_POINT_MODEL = str(REPO / "models" / "tcdcn_5pt")
VARIANTS_68 = {
    "5-point conv1-3, frozen in stage 1, then trained": [
        "--init-trunk", FIVE_POINT_MODEL, "--freeze-trunk", "first"],
    "from scratch": [],
    "5-point conv1-3, frozen throughout": ["--init-trunk", FIVE_POINT_MODEL,
                                           "--freeze-trunk", "all"],
    "5-point conv1-3, trained throughout": ["--init-trunk", FIVE_POINT_MODEL],
    "5-point conv1-3, frozen in stage 1, then at 0.1x rate": [
        "--init-trunk", FIVE_POINT_MODEL, "--freeze-trunk", "first", "--trunk-lr-mult", "0.1"],
    "5-point conv1-3, trained throughout, lr 0.01": ["--init-trunk", FIVE_POINT_MODEL,
                                                     "--lr", "0.01"],
    "5-point conv1-3, frozen in stage 1, then trained, lr 0.01": [
        "--init-trunk", FIVE_POINT_MODEL, "--freeze-trunk", "first", "--lr", "0.01"],
    # TCDCN's auxiliary tasks across data sets: stage 1 on --lmdb mixed half and half with
    # --aux-lmdb (MTFL at the same size; tools/mix_lmdb.py, built under OUT), every head on,
    # the 68-point loss masked to the 300-W faces; the finetune on --lmdb alone. Stage 1 gets
    # the landmark stage's budget.
    "5-point conv1-3, frozen in stage 1 with MTFL's tasks (mixed LMDB), then trained": {
        "mix": True, "train": ["--init-trunk", FIVE_POINT_MODEL, "--freeze-trunk", "first",
                               "--stages", "multitask", "finetune"]},
}
# The landmark loss, as a finetune of the 5-point weights released at START_COMMIT (every
# variant starts from that caffemodel, read from git into OUT/start.caffemodel; --max-iter's
# third number is the budget)
START_COMMIT = "e8e12bd9b866bf27a6f3e002b06819bc68c7dae6"
START_WEIGHTS = "python/tcdcn/models/tcdcn_5pt/tcdcn_5pt.caffemodel"
_FINETUNE = ["--init-weights", "{out}/start.caffemodel", "--stages", "finetune",
             "--lr-policy", "poly"]
VARIANTS_LOSS = {
    "Euclidean, lr 0.01": [*_FINETUNE, "--lr", "0.01"],
    "Wing (w 6 px, epsilon 1.25 px), lr 1e-4": [*_FINETUNE, "--loss", "wing", "--lr", "1e-4"],
    "Wing (w 6 px, epsilon 1.25 px), lr 5e-4": [*_FINETUNE, "--loss", "wing", "--lr", "5e-4"],
    "Wing (w 6 px, epsilon 1.25 px), lr 2e-3": [*_FINETUNE, "--loss", "wing", "--lr", "2e-3"],
    "Wing (w 6 px, epsilon 1.25 px), lr 6e-3": [*_FINETUNE, "--loss", "wing", "--lr", "6e-3"],
    "Euclidean, lr 0.03": [*_FINETUNE, "--lr", "0.03"],
    "Wing (w 6 px, epsilon 0.5 px), lr 5e-4": [*_FINETUNE, "--loss", "wing", "--wing", "6", "0.5",
                                               "--lr", "5e-4"],
}
# What the 5-point net is fed: each variant names the make_lmdb.py options of its LMDB
# (built under OUT/ with --lmdb-samples and --lmdb-seed, shared by variants with the same
# options; the validation split is the same in all: it depends on the seed only) and its
# train.py options. The base recipe: profile faces drawn 3x, spread 1, batch 256.
_BASE_LMDB = ["--profile-weight", "3"]
_POLY = ["--lr-policy", "poly"]
VARIANTS_DATA = {
    "baseline (profile faces 3x, spread 1, batch 256)": {"lmdb": _BASE_LMDB, "train": _POLY},
    "no pose balance (profile faces 1x)": {"lmdb": ["--profile-weight", "1"], "train": _POLY},
    "augmentation spread 0.5x": {"lmdb": [*_BASE_LMDB, "--spread", "0.5"], "train": _POLY},
    "augmentation spread 1.5x": {"lmdb": [*_BASE_LMDB, "--spread", "1.5"], "train": _POLY},
    "+ 300-W faces (5 points derived, attributes unlabelled)": {
        "lmdb": [*_BASE_LMDB, "--add-300w", "{root}"], "train": _POLY},
    "batch 128 (same samples: twice the iterations)": {
        "lmdb": _BASE_LMDB, "train": [*_POLY, "--batch", "128"]},
    "2x wider trunk": {"lmdb": _BASE_LMDB, "train": [*_POLY, "--width", "2"]},
}
SUITES = {"5pt": VARIANTS, "68pt": VARIANTS_68, "5pt-loss": VARIANTS_LOSS,
          "5pt-data": VARIANTS_DATA}


def build_lmdb(out: Path, flags: list[str], args, key: str) -> Path:
    """The LMDB of a 5pt-data variant under OUT (built once, kept for other variants and
    seeds; make_lmdb.py itself writes to a temporary folder and renames at the end)."""
    path = out / f"lmdb_{key}"
    if not (path / "manifest.json").is_file():
        cmd = [sys.executable, str(REPO / "tools" / "make_lmdb.py"), "--dataset", "mtfl",
               "--out", str(path), "--samples", str(args.lmdb_samples),
               "--seed", str(args.lmdb_seed), *flags,
               *(["--root", str(args.root)] if args.root else [])]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def mix_lmdb(out: Path, main: Path, aux: Path) -> Path:
    """OUT/lmdb_mix: --lmdb and --aux-lmdb mixed half and half (built once)."""
    path = out / "lmdb_mix"
    if not (path / "manifest.json").is_file():
        cmd = [sys.executable, str(REPO / "tools" / "mix_lmdb.py"), "--main", str(main),
               "--aux", str(aux), "--out", str(path)]
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def portable(flags: list[str]) -> list[str]:
    """Flags as typed from the project root (no absolute paths into this checkout)."""
    return [f.replace(str(REPO) + "/", "") for f in flags]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lmdb", type=Path, help="the LMDB (not for --suite 5pt-data: each "
                                                "variant builds its own)")
    p.add_argument("--lmdb-samples", type=int, default=1_050_000,
                   help="5pt-data: training samples per LMDB")
    p.add_argument("--lmdb-seed", type=int, default=2, help="5pt-data: make_lmdb.py --seed")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-iter", type=int, nargs=3, default=(600, 300, 300))
    p.add_argument("--test-interval", type=int, default=150)
    p.add_argument("--lr", type=float, default=None, help="default: train.py's")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", nargs="*", help="variant name prefixes to run")
    p.add_argument("--suite", choices=SUITES, default="5pt",
                   help="the variants: 5-point recipe (default) or 68-point finetuning")
    p.add_argument("--root", type=Path, help="data root, passed to release_model.py")
    p.add_argument("--aux-lmdb", type=Path, metavar="LMDB_DIR",
                   help="68pt: the MTFL LMDB (same --size as --lmdb) that the mixed-LMDB "
                        "variant mixes in")
    args = p.parse_args(argv)
    if args.suite != "5pt-data" and args.lmdb is None:
        p.error(f"--suite {args.suite} needs --lmdb")
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "ablations.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    py = sys.executable
    if args.suite == "5pt-loss" and not (args.out / "start.caffemodel").is_file():
        try:
            blob = subprocess.run(["git", "-C", str(REPO), "show",
                                   f"{START_COMMIT}:{START_WEIGHTS}"],
                                  capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            raise SystemExit(f"error: the 5pt-loss suite starts from {START_WEIGHTS} as of "
                             f"commit {START_COMMIT}: it needs git and a clone with that "
                             "history") from None
        atomic_write(args.out / "start.caffemodel", blob)
    root = str(data_root(args.root))
    for variant, flags in SUITES[args.suite].items():
        if args.only and not any(variant.startswith(o) for o in args.only):
            continue
        # a second seed is a result of its own, beside the first
        name = variant if args.seed == 1 else f"{variant} [seed {args.seed}]"
        if name in results:
            print(f"done earlier: {name}")
            continue
        lmdb = args.lmdb
        if isinstance(flags, dict) and flags.get("mix"):   # 68pt: stage 1 on a mixed LMDB
            if args.aux_lmdb is None:
                print(f"skipped (needs --aux-lmdb): {name}", flush=True)
                continue
            lmdb = mix_lmdb(args.out, args.lmdb, args.aux_lmdb)
            flags = [*flags["train"], "--landmark-lmdb", str(args.lmdb)]
        elif isinstance(flags, dict):   # 5pt-data: the variant's own LMDB
            # named by the options as written (without the data root's path)
            key = re.sub(r"[^A-Za-z0-9.]+", "_", " ".join(flags["lmdb"]).replace("{root}", ""))
            lmdb_flags = [f.replace("{root}", root) for f in flags["lmdb"]]
            lmdb = build_lmdb(args.out, lmdb_flags, args, key.strip("_"))
            flags = flags["train"]
        flags = [f.replace("{out}", str(args.out)) for f in flags]
        # one folder per variant name (not per position: adding a variant must not hand an
        # existing folder to another variant)
        run = args.out / re.sub(r"[^A-Za-z0-9.]+", "_", name).strip("_")
        budget = list(args.max_iter)
        test_interval = args.test_interval
        if "--batch" in flags:           # the same samples: iterations scale with 256 / batch
            factor = 256 // int(flags[flags.index("--batch") + 1])
            budget, test_interval = [b * factor for b in budget], test_interval * factor
        if "--unstaged" in flags:        # the same total iterations in one stage
            budget = [sum(budget), 1, 1]
        if "--landmark-lmdb" in flags:   # the multitask stage takes the landmark stage's
            budget = [budget[1], 1, budget[2]]
        if "--landmarks-only" in flags:  # stage 1's share goes to landmark training
            budget = [1, budget[0] + budget[1], budget[2]]
        cmd = [py, str(REPO / "tools" / "train.py"), "--lmdb", str(lmdb), "--run", str(run),
               "--max-iter", *map(str, budget), "--test-interval", str(test_interval),
               *(["--lr", str(args.lr)] if args.lr is not None else []),
               "--seed", str(args.seed), *flags]
        print("$ " + " ".join(cmd), flush=True)
        trained = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if trained.returncode != 0:   # e.g. diverged: a result too, recorded as such
            why = (trained.stderr.strip().splitlines() or ["(no message)"])[-1]
            results[name] = {"flags": portable(flags), "lmdb": portable([str(lmdb)])[0],
                             "budget": budget, "seed": args.seed, "failed": why}
            results_path.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{name}: failed: {why}", flush=True)
            continue
        model = run / "model"
        subprocess.run([py, str(REPO / "tools" / "release_model.py"), "--run", str(run), "--out",
                        str(model), "--calibration-faces", "0", "--validation-only",
                        *(["--root", str(args.root)] if args.root else [])], check=True,
                       stdout=subprocess.DEVNULL)
        numbers = json.loads((model / "model.json").read_text())["numbers"]
        val = numbers.get("validation_list_boxes") or numbers["validation_landmarks_boxes"]
        state = json.loads((run / "state.json").read_text())
        # wall seconds of the stages (a run paused or sharing the machine counts it all)
        seconds = sum(s.get("seconds", 0) for s in state["stages"].values())
        results[name] = {"flags": portable(flags), "lmdb": portable([str(lmdb)])[0],
                         "lmdb_command": " ".join(portable((json.loads(
                             (Path(lmdb) / "manifest.json").read_text()).get("command") or "")
                             .split())), "budget": budget, "seed": args.seed,
                         "train_seconds": seconds or None,
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
        if "failed" in r:
            lines.append(f"| {name} | failed: {r['failed'].removeprefix('error: ')} | | | |")
            continue
        lines.append(f"| {name} | {r['val_nme']:.2f} | {r['val_fr10']:.1f} | {r['val_auc10']:.3f} "
                     f"| {r['best_landmark_loss']:.5f} |")
    (args.out / "ablations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
