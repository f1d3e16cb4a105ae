"""Shared fixtures: the Caffe build that tools/setup.sh linked into the environment, a
synthetic data root, a random-weight model folder, the astronaut photo. Markers are
registered in tests/pytest.ini; tests that need pycaffe are skipped, with the reason,
where it does not import."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import N_FACES, face_points


def _pycaffe() -> str | None:
    """Why this project's pycaffe cannot be used here (None: it can)."""
    try:
        import caffe  # noqa: F401
    except ImportError as err:
        return f"pycaffe does not import ({err}): run tools/setup.sh"
    return None


def pytest_collection_modifyitems(config, items):
    why = None
    for item in items:
        if "caffe" in item.fixturenames and not item.get_closest_marker("caffe"):
            item.add_marker(pytest.mark.caffe)
        if item.get_closest_marker("caffe"):
            why = why or _pycaffe() or ""
            if why:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def build():
    from tcdcn.build.caffe_build import build_info
    return build_info()


@pytest.fixture(scope="session")
def caffe():
    """pycaffe, quiet: glog's INFO lines go nowhere."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe as caffe_module
    caffe_module.set_mode_cpu()
    return caffe_module


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (one face), BGR, loaded once per session."""
    import skimage.data
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


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
    from tcdcn.schemes import TASKS
    from tcdcn.training.net import NetOptions, deploy_net
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
