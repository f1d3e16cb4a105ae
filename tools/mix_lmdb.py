#!/usr/bin/env python3
"""Mix a 68-point LMDB (300-W) with a 5-point + attribute LMDB (MTFL) into one, for a net
whose 68-point head learns from the first and whose 5-point and attribute heads learn from
both (TCDCN's auxiliary tasks across data sets).

  tools/mix_lmdb.py --main lmdb/300w_1m_size48 --aux lmdb/mtfl_1m_size48 --out lmdb/mix48

Both inputs come from tools/make_lmdb.py with the same --size. Record i of the output is the
aux set's for a share --aux-fraction of the records, evenly spread (both inputs are already
shuffled). Labels: 68 points, a mask (0 on MTFL faces), five points (derived on 300-W
faces), attributes (-1 on 300-W faces). Validation: the main set's faces. Written beside
--out and renamed into place; prints a summary and writes OUT/manifest.json.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tcdcn.data.datasets import DataError
from tcdcn.data.lmdb_mix import mix
from tqdm import tqdm


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--main", type=Path, required=True, help="68-point LMDB folder (300-W)")
    p.add_argument("--aux", type=Path, required=True, help="5-point + attribute LMDB folder (MTFL)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--aux-fraction", type=float, default=0.5,
                   help="share of the output's records taken from --aux (default 0.5)")
    args = p.parse_args(argv)
    if not 0 < args.aux_fraction < 1:
        p.error(f"--aux-fraction must be between 0 and 1, not {args.aux_fraction}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    try:
        m = mix(args.main, args.aux, args.out.resolve(), args.aux_fraction,
                progress=lambda total: tqdm(total=total, unit="record", unit_scale=True,
                                            desc="mix"), command=command)
    except (DataError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: nothing was written to {args.out}", file=sys.stderr)
        return 130
    c = m["cross_dataset"]
    print(f"train: {m['counts']['train_records']:,} records ({c['main_records']:,} from "
          f"{args.main}, {c['aux_records']:,} from {args.aux}); val: "
          f"{m['counts']['val_records']:,} faces of {args.main}")
    print(f"wrote {args.out}/ (manifest.json has the details)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
