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

from tcdcn.evaluation.tables import TASKS, rows, rows_68, stage_rows


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
