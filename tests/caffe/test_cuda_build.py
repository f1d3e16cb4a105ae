"""CUDA without a GPU: the CUDA option configures, and layers/*.cu compile with nvcc.

nvcc is the machine's, or one tools/setup.sh laid out from NVIDIA's PyPI wheels
(tools/cuda-toolkit.txt), so the check runs wherever setup ran. The full GPU build and the
GPU gtests run only on a lent device machine."""
from __future__ import annotations

import os
import re
import sys

import pytest

from tests.helpers import REPO, run

pytestmark = [pytest.mark.caffe, pytest.mark.slow]


def test_setup_found_or_made_an_nvcc(build):
    """setup.sh records an nvcc unless told not to prepare the check (TCDCN_CUDA_CHECK=0,
    as the CI image is built)."""
    if os.environ.get("TCDCN_CUDA_CHECK") == "0":
        pytest.skip("TCDCN_CUDA_CHECK=0: setup was told not to prepare the CUDA check")
    assert build.nvcc is not None and build.nvcc.is_file(), \
        "tools/setup.sh found no nvcc and laid none out from PyPI"


def test_cuda_option_configures_and_our_cu_files_compile(build, tmp_path):
    if build.nvcc is None:
        pytest.skip("no nvcc (tools/setup.sh ran with TCDCN_CUDA_CHECK=0)")
    nvcc = run([build.nvcc, "--version"]).stdout
    release = re.search(r"release (\d+\.\d+)", nvcc).group(1)
    env = dict(os.environ, PATH=f"{build.nvcc.parent}{os.pathsep}{os.environ['PATH']}")
    cmd = ["cmake", "-S", REPO, "-B", tmp_path, "-Wno-dev", "-DTCDCN_USE_CUDA=ON",
           f"-DPYTHON_EXECUTABLE={sys.executable}", f"-DCAFFE_DOWNLOAD_DIR={build.download_dir}"]
    if build.cuda_extra:
        cmd += [f"-DTCDCN_CUDA_EXTRA={build.cuda_extra}",
                f"-DCUDA_NVCC_FLAGS=-I{build.cuda_extra}/include"]
    out = run(cmd, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"CUDA detected: {release}" in out.stdout
    # Only architectures CUDA 13 still supports (Caffe's list started at sm_20).
    archs = re.search(r"Added CUDA NVCC flags for: (.*)", out.stdout).group(1).split()
    assert archs and all(int(re.sub(r"\D", "", a)) >= 75 for a in archs), archs

    out = run(["cmake", "--build", tmp_path, "--target", "cuda_compile_check", "-j2"], env=env)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    cu_files = sorted(p.stem for p in (REPO / "layers").rglob("*.cu"))
    assert cu_files, "layers/ has .cu files"
    for stem in cu_files:
        obj = tmp_path / "cuda_check" / f"{stem}.o"
        assert obj.is_file() and obj.stat().st_size > 0, obj
        symbols = run(["nm", "-C", obj]).stdout
        assert "Forward_gpu" in symbols and "Backward_gpu" in symbols, stem
