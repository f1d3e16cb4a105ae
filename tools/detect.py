#!/usr/bin/env python3
"""Faces, landmarks and attributes for images, folders and videos: see tcdcn/cli.py (also
installed as the `tcdcn-detect` command and `python -m tcdcn`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
from tcdcn.cli import main

if __name__ == "__main__":
    sys.exit(main())
