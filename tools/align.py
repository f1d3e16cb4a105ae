#!/usr/bin/env python3
"""Align every face of a photo collection: see tcdcn/align/cli.py (also installed as the
`tcdcn-align` command)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
from tcdcn.align.cli import main

if __name__ == "__main__":
    sys.exit(main())
