"""Where the patched Caffe build that tools/setup.sh linked into this environment lives."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CaffeBuild:
    key: str          # hash of every build input (pin, patches, layers, options, toolchain)
    prefix: Path      # install prefix: bin/caffe, lib/, python/caffe
    build_dir: Path   # CMake build folder
    source_dir: Path  # the patched Caffe source
    gtest: Path       # Caffe's gtest binary restricted to the tests this project relies on
    cuda: bool
    cuda_extra: Path | None   # cuBLAS/cuRAND headers for the compile-only CUDA check
    download_dir: Path        # the fetched (verified) Caffe tarball lives here
    nvcc: Path | None = None  # the machine's nvcc, or one laid out from PyPI (setup.sh)
    blas: str = ""            # TCDCN_BLAS of the build (setup.sh)
    mkl_root: Path | None = None   # the oneMKL wheels' prefix where blas is mkl

    @property
    def caffe_tool(self) -> Path:
        """The venv's caffe wrapper (it picks OpenBLAS's kernels where OpenBLAS is the BLAS),
        else the binary."""
        wrapper = Path(sys.prefix) / "bin" / "caffe"
        return wrapper if wrapper.is_file() else self.prefix / "bin" / "caffe"


def build_info(venv: Path | None = None) -> CaffeBuild:
    """Read the build record tools/setup.sh wrote into the environment (default: sys.prefix)."""
    path = Path(venv or sys.prefix) / "tcdcn-caffe-build.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run tools/setup.sh (or `make test`) first")
    raw = json.loads(path.read_text())
    return CaffeBuild(key=raw["key"], prefix=Path(raw["prefix"]), build_dir=Path(raw["build_dir"]),
                      source_dir=Path(raw["source_dir"]), gtest=Path(raw["gtest"]),
                      cuda=str(raw.get("cuda", "OFF")).upper() == "ON",
                      cuda_extra=Path(raw["cuda_extra"]) if raw.get("cuda_extra") else None,
                      download_dir=Path(raw["download_dir"]),
                      nvcc=Path(raw["nvcc"]) if raw.get("nvcc") else None,
                      blas=raw.get("blas", ""),
                      mkl_root=Path(raw["mkl_root"]) if raw.get("mkl_root") else None)
