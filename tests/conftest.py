"""Shared fixtures: the Caffe build that tools/setup.sh linked into the environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line("markers", "caffe: needs the patched Caffe build (tools/setup.sh)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def build():
    from tcdcn.caffe_build import build_info
    return build_info()


@pytest.fixture(scope="session")
def caffe():
    """pycaffe, quiet: glog's INFO lines go nowhere."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe as caffe_module
    caffe_module.set_mode_cpu()
    return caffe_module


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], **kwargs)


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable
