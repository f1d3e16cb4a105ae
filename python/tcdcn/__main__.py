"""`python -m tcdcn IMAGES... --out DIR`: the same as the `tcdcn-detect` command."""
import sys

from tcdcn.cli import main

sys.exit(main())
