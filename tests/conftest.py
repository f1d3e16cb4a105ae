"""Shared fixtures: the Caffe build that tools/setup.sh linked into the environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
# The one place tests find the shared data and models (tools default to the same root).
SHARED_DATA = Path(os.environ.get("TCDCN_DATA", REPO.parent / "shared" / "data"))
SHARED_MODELS = REPO.parent / "shared" / "models"


def needs_shared(relative: str, what: str | None = None):
    """Skip unless SHARED_DATA/relative exists (for '../models/...', the shared models)."""
    path = (SHARED_DATA / relative).resolve()
    return pytest.mark.skipif(not path.exists(), reason=f"{what or path} not present")


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


N_FACES = 24


def face_points(rng) -> np.ndarray:
    """Five well separated points inside a 40x40 box at (30, 20)-(70, 60)."""
    base = np.array([[42, 32], [58, 32], [50, 42], [43, 51], [57, 51]], float)
    return base + rng.uniform(-1.5, 1.5, size=base.shape)


@pytest.fixture
def dataset(tmp_path) -> Path:
    """root/MTFL/{training.txt, lfw_5590/*.jpg} and root/CNN_FacePoint/trainImageList.txt,
    in the released formats (1-based MTFL points, 0-based CNN_FacePoint, CRLF, backslashes)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    (root / "MTFL" / "lfw_5590").mkdir(parents=True)
    (root / "CNN_FacePoint").mkdir()
    mtfl, boxes = [], []
    for i in range(N_FACES):
        name = f"Person_{chr(65 + i % 26)}{i}_0001.jpg"
        pts = face_points(rng)
        img = np.full((100, 110), 40, np.uint8)
        for x, y in pts:
            cv2.circle(img, (int(round(x)), int(round(y))), 2, 250, -1)
        cv2.imwrite(str(root / "MTFL" / "lfw_5590" / name), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
        rel = f"lfw_5590\\{name}"
        xs, ys = " ".join(f"{v + 1:.6f}" for v in pts[:, 0]), " ".join(f"{v + 1:.6f}" for v in pts[:, 1])
        attrs = f"{1 + i % 2} {1 + (i // 2) % 2} 2 {1 + i % 5}"
        mtfl.append(f" {rel} {xs} {ys} {attrs}\r\n")
        inter = " ".join(f"{x:.6f} {y:.6f}" for x, y in pts)
        boxes.append(f"{rel} 30 70 20 60 {inter}\r\n")
    (root / "MTFL" / "training.txt").write_text("".join(mtfl) + "\r\n", newline="")
    (root / "CNN_FacePoint" / "trainImageList.txt").write_text("".join(boxes), newline="")
    return root


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, caffe):
    """A model folder like release_model.py writes, with random weights."""
    import json
    from tcdcn.net import NetOptions, deploy_net
    from tcdcn.schemes import TASKS
    folder = tmp_path_factory.mktemp("model")
    (folder / "deploy.prototxt").write_text(str(deploy_net(NetOptions())))
    net = caffe.Net(str(folder / "deploy.prototxt"), caffe.TEST)
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.normal(0, 0.1, b.data.shape)
    net.save(str(folder / "w.caffemodel"))
    (folder / "model.json").write_text(json.dumps({
        "files": {"deploy": "deploy.prototxt", "weights": "w.caffemodel"},
        "input": {"size": 40}, "landmark_scheme": "5pt",
        "attributes": {t.name: list(t.classes) for t in TASKS},
        "detector_calibration": {"haar": {"dx": 0.0, "dy": 0.05, "scale": 1.1}}}))
    return folder
