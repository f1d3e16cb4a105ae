#!/usr/bin/env python3
"""Unpack NVIDIA's CUDA wheels into a folder, for the compile-only CUDA check.

  unpack_cuda_extra.py REQUIREMENTS WHEEL_DIR DEST            include/ and the cuBLAS/cuRAND
                                                              libraries (tools/cuda-extra.txt)
  unpack_cuda_extra.py --toolkit REQUIREMENTS WHEEL_DIR DEST  everything: a CUDA root with
                                                              bin/nvcc (tools/cuda-toolkit.txt)

Used by tools/setup.sh on machines whose nvcc comes without cuBLAS and cuRAND, or that have
no nvcc at all.
"""
from __future__ import annotations

import re
import shutil
import sys
import zipfile
from pathlib import Path

WANTED = re.compile(r"nvidia/[^/]+/(include/.+|lib/lib(cublas|curand)\.so\.\d+)$")
EVERYTHING = re.compile(r"nvidia/[^/]+/((?:bin|include|lib|nvvm)/.+)$")


def main(argv: list[str]) -> int:
    toolkit = argv[:1] == ["--toolkit"]
    if toolkit:
        argv = argv[1:]
    wanted = EVERYTHING if toolkit else WANTED
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
                found = wanted.match(member)
                if not found or member.endswith("/"):
                    continue
                target = tmp / found.group(1)
                target.parent.mkdir(parents=True, exist_ok=True)
                with wheel.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                mode = (wheel.getinfo(member).external_attr >> 16) & 0o777
                if mode or "/bin/" in f"/{found.group(1)}":   # zip keeps modes; bin/ runs
                    target.chmod((mode or 0o644) | (0o755 if "bin/" in found.group(1) else 0))
    if toolkit:
        (tmp / "lib64").symlink_to("lib")   # where CMake's FindCUDA looks for libcudart
        for lib in sorted((tmp / "lib").glob("lib*.so.*")):   # and by its unversioned name
            plain = lib.with_name(lib.name.split(".so.")[0] + ".so")
            if not plain.exists():
                plain.symlink_to(lib.name)
        if not (tmp / "bin" / "nvcc").is_file():
            print(f"error: no bin/nvcc in the wheels of {requirements}", file=sys.stderr)
            return 1
    (tmp / ".complete").touch()
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
