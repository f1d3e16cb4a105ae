"""CUDA without a GPU: the CUDA option configures, and layers/*.cu compile with nvcc.

The full GPU build and the GPU gtests run only on a lent device machine
(tools/device_check.sh)."""
from __future__ import annotations

import re
import shutil
import sys

import pytest

from conftest import REPO, run

pytestmark = [pytest.mark.caffe, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on this machine")]


def test_cuda_option_configures_and_our_cu_files_compile(build, tmp_path):
    nvcc = run(["nvcc", "--version"]).stdout
    release = re.search(r"release (\d+\.\d+)", nvcc).group(1)
    cmd = ["cmake", "-S", REPO, "-B", tmp_path, "-Wno-dev", "-DTCDCN_USE_CUDA=ON",
           f"-DPYTHON_EXECUTABLE={sys.executable}", f"-DCAFFE_DOWNLOAD_DIR={build.download_dir}"]
    if build.cuda_extra:
        cmd += [f"-DTCDCN_CUDA_EXTRA={build.cuda_extra}",
                f"-DCUDA_NVCC_FLAGS=-I{build.cuda_extra}/include"]
    out = run(cmd)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"CUDA detected: {release}" in out.stdout
    # Only architectures CUDA 13 still supports (Caffe's list started at sm_20).
    archs = re.search(r"Added CUDA NVCC flags for: (.*)", out.stdout).group(1).split()
    assert archs and all(int(re.sub(r"\D", "", a)) >= 75 for a in archs), archs

    out = run(["cmake", "--build", tmp_path, "--target", "cuda_compile_check", "-j2"])
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    cu_files = sorted(p.stem for p in (REPO / "layers").rglob("*.cu"))
    assert cu_files, "layers/ has .cu files"
    for stem in cu_files:
        obj = tmp_path / "cuda_check" / f"{stem}.o"
        assert obj.is_file() and obj.stat().st_size > 0, obj
        symbols = run(["nm", "-C", obj]).stdout
        assert "Forward_gpu" in symbols and "Backward_gpu" in symbols, stem
