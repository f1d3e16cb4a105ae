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

from tcdcn.evaluation.tables import (
    end_to_end_rows,
    inference_rows,
    layer_rows,
    train_rows,
)


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
