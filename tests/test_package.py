"""`pip install` for users who only want to run the model: the wheel of python/ holds the
model (deploy files, OpenCV export, model.json), installs into a fresh virtual environment
without pycaffe, and finds the faces in a real photo there, with the same landmarks as the
Caffe backend here."""
from __future__ import annotations

import json
import os
import sys
import zipfile

import cv2
import numpy as np
import pytest

from conftest import REPO, run

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    res = run([sys.executable, "-m", "pip", "wheel", str(REPO / "python"), "--no-deps",
               "-w", str(out), "-q", "--disable-pip-version-check"])
    assert res.returncode == 0, res.stderr[-3000:]
    wheels = list(out.glob("tcdcn-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_holds_the_model_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    model = "tcdcn/models/tcdcn_5pt/"
    meta = json.loads((REPO / "models" / "tcdcn_5pt" / "model.json").read_text())
    for f in ("model.json", meta["files"]["deploy"], meta["files"]["weights"],
              meta["files_opencv"]["deploy"], meta["files_opencv"]["weights"]):
        assert model + f in names, f
    # the default detector's models, with their licence next to them
    for f in ("det1.prototxt", "det1.caffemodel", "det2.prototxt", "det2.caffemodel",
              "det3.prototxt", "det3.caffemodel", "LICENSE", "README.md"):
        assert "tcdcn/models/mtcnn/" + f in names, f
    licence = zipfile.ZipFile(wheel).read("tcdcn/models/mtcnn/LICENSE").decode()
    assert "MIT License" in licence and "Kaipeng Zhang" in licence
    assert "tcdcn/cli.py" in names and "tcdcn/__main__.py" in names
    assert not [n for n in names if n.endswith(".png") or "training_log" in n]
    assert not [n for n in names if n.startswith(("tests/", "shared/", "data/"))]
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert "tcdcn-detect = tcdcn.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_fresh_environment_finds_the_faces_like_the_caffe_backend(wheel, tmp_path):
    import skimage.data
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
              env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert run([py, "-c", "import caffe"], env=env).returncode != 0, "pycaffe leaked in"
    listed = run([py, "-m", "pip", "list", "--format=freeze"], env=env).stdout.lower()
    extra = {l.split("==")[0] for l in listed.split()} - {"tcdcn", "numpy",
                                                          "opencv-python-headless", "pip",
                                                          "setuptools"}
    assert not extra, f"runtime dependencies beyond numpy and OpenCV: {extra}"
    out = tmp_path / "out"
    res = run([venv / "bin" / "tcdcn-detect", photo, "--out", out], env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "opencv backend" in res.stderr
    faces = json.loads((out / "faces.jsonl").read_text())["faces"]
    assert len(faces) >= 1
    res = run([py, "-m", "tcdcn", photo, "--out", tmp_path / "out2"], env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    # the same boxes through this checkout's Caffe backend
    from tcdcn.api import Detector
    ours = Detector(backend="caffe")(str(photo))
    assert len(ours) == len(faces)
    for a, b in zip(sorted(ours, key=lambda f: f.box[0]), sorted(faces, key=lambda f: f["box"][0])):
        np.testing.assert_allclose(a.box, b["box"], atol=0.01)
        np.testing.assert_allclose(a.landmarks, np.array(b["landmarks"]), atol=0.02)
