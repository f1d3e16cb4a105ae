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

from tests.helpers import REPO, run

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
    for f in ("tcdcn_5pt/tcdcn_5pt.onnx", "tcdcn_68pt/tcdcn_68pt.onnx", "snet/snet.onnx",
              "mtcnn/det1.onnx", "mtcnn/det2.onnx", "mtcnn/det3.onnx", "mtcnn/model.json"):
        assert "tcdcn/models/" + f in names, f
    licence = zipfile.ZipFile(wheel).read("tcdcn/models/mtcnn/LICENSE").decode()
    assert "MIT License" in licence and "Kaipeng Zhang" in licence
    assert "tcdcn/cli.py" in names and "tcdcn/__main__.py" in names
    assert not [n for n in names if n.endswith(".png") or "training_log" in n]
    assert not [n for n in names if n.startswith(("tests/", "shared/", "data/"))]
    import tcdcn  # the version is written once, in the package, and the wheel takes it
    assert wheel.name.startswith(f"tcdcn-{tcdcn.__version__}-"), wheel.name
    entry = [n for n in names if n.endswith("entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "tcdcn-detect = tcdcn.cli:main" in scripts and "tcdcn-align = tcdcn.align.cli:main" in scripts


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh virtual environment with the wheel and OpenCV 4 installed: (its folder,
    environment)."""
    venv = tmp_path_factory.mktemp("env") / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # OpenCV 4 (its Caffe importer runs the Caffe exports); OpenCV 5 has a test of its own
    res = run([venv / "bin" / "python", "-m", "pip", "install", "-q",
               "--disable-pip-version-check", str(wheel), "opencv-python-headless<5"], env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return venv, env


@pytest.mark.caffe   # the comparison runs our Caffe backend here
def test_fresh_environment_finds_the_faces_like_the_caffe_backend(installed, astronaut,
                                                                   tmp_path):
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut)
    venv, env = installed
    py = venv / "bin" / "python"
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


def test_installed_detector_can_be_shared_by_threads(installed, astronaut, tmp_path):
    """The installed package (OpenCV backend, no pycaffe): one Detector called from 8
    threads on 50 different images each gives what one thread gives (tests/test_threads.py's
    check, run in the fresh environment)."""
    import inspect

    from tests import test_threads
    venv, env = installed
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut)
    script = "\n".join([
        "import sys, cv2, numpy as np",
        "from concurrent.futures import ThreadPoolExecutor",
        "from tcdcn.api import Detector",
        f"THREADS, PER_THREAD = {test_threads.THREADS}, {test_threads.PER_THREAD}",
        inspect.getsource(test_threads.varied_images),
        inspect.getsource(test_threads.as_numbers),
        inspect.getsource(test_threads.shared_by_threads),
        f"images = varied_images(cv2.imread({str(photo)!r}), THREADS * PER_THREAD)",
        "alone, threaded = shared_by_threads(Detector(), images)",
        "print(sum(a != b for a, b in zip(alone, threaded)), sum(len(a) > 0 for a in alone))"])
    res = run([venv / "bin" / "python", "-c", script], env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    differ, with_faces = (int(v) for v in res.stdout.split())
    assert differ == 0 and with_faces > 200


# The wheel with OpenCV 5 (no Caffe importer: the ONNX files) and with onnxruntime (the
# [onnx] extra): each finds the astronaut's face as our Caffe backend does.
OTHER_ENGINES = {"opencv5": (["opencv-python-headless==5.1.0.95"], "opencv backend"),
                 "onnxruntime": (["onnxruntime==1.22.1"], "onnx backend")}


@pytest.mark.caffe
@pytest.mark.parametrize("engine", sorted(OTHER_ENGINES))
def test_the_wheel_runs_with_opencv_5_and_with_onnxruntime(wheel, tmp_path, astronaut, engine):
    extra, says = OTHER_ENGINES[engine]
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    py = venv / "bin" / "python"
    res = run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel),
               *extra], env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    if engine == "opencv5":
        probe = run([py, "-c", "import cv2; print(cv2.__version__, "
                               "hasattr(cv2.dnn, 'readNetFromCaffe'))"], env=env).stdout.split()
        assert probe[0].startswith("5.") and probe[1] == "False"
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut)
    res = run([venv / "bin" / "tcdcn-detect", photo, "--out", tmp_path / "out"], env=env,
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert says in res.stderr
    faces = json.loads((tmp_path / "out" / "faces.jsonl").read_text())["faces"]
    from tcdcn.api import Detector
    ours = Detector(backend="caffe")(str(photo))
    assert len(ours) == len(faces) >= 1
    for a, b in zip(sorted(ours, key=lambda f: f.box[0]), sorted(faces, key=lambda f: f["box"][0])):
        np.testing.assert_allclose(a.box, b["box"], atol=0.05)
        np.testing.assert_allclose(a.landmarks, np.array(b["landmarks"]), atol=0.05)
