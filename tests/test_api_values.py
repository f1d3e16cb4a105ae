"""Values a user chooses are checked before Caffe or OpenCV see them (Caffe aborts the
whole process on some), and released model files are checked against their sha256."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO

BUNDLED = REPO / "models" / "tcdcn_5pt"


@pytest.mark.parametrize("batch", [-1, 0, 100000, 2.5, True])
def test_batch_sizes_caffe_cannot_take_are_errors(batch):
    from tcdcn.api import Detector
    with pytest.raises(ValueError, match="batch must be a whole number from 1 to"):
        Detector(batch=batch, backend="opencv")


@pytest.mark.caffe
def test_a_huge_batch_no_longer_aborts_the_process(caffe):
    """Before the check, Detector(batch=100000) ended the process in a glog "Check failed"
    (rc 134); now it is a ValueError a caller catches."""
    code = ("from tcdcn.api import Detector\ntry:\n    Detector(batch=100000, backend='caffe')\n"
            "except ValueError as e:\n    print('caught', e)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "python"), "GLOG_minloglevel": "2",
                              "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0 and "caught batch must be" in res.stdout, res.stderr[-500:]


@pytest.mark.parametrize("refine", [-1, 6, 1.5])
def test_refine_out_of_range_is_an_error(refine):
    from tcdcn.api import Detector
    with pytest.raises(ValueError, match="refine must be"):
        Detector(refine=refine, backend="opencv")


@pytest.mark.parametrize("pad", [100, -0.1, float("nan"), "wide", [0.1, 5]])
def test_pads_are_bounded(pad):
    from tcdcn.api import Detector
    with pytest.raises(ValueError, match="pad must be"):
        Detector(pad=pad, backend="opencv")


@pytest.fixture(scope="module")
def opencv_detector():
    from tcdcn.api import Detector
    return Detector(backend="opencv")


@pytest.mark.parametrize("box, words", [
    ([np.nan, 10, 100, 100], "not a finite number"),
    ([5000, 5000, 5100, 5100], "lies in the"),
    ([100, 100, 100, 100], "empty"),
])
def test_bad_boxes_given_to_the_detector_are_errors(opencv_detector, astronaut, box, words):
    with pytest.raises(ValueError, match=words):
        opencv_detector(astronaut, boxes=[box])


def test_good_boxes_still_give_faces(opencv_detector, astronaut):
    faces = opencv_detector(astronaut)
    again = opencv_detector(astronaut, boxes=[faces[0].box])
    assert len(again) == 1 and np.abs(again[0].landmarks - faces[0].landmarks).max() < 3


def _copy(tmp_path, name="m"):
    out = tmp_path / name
    shutil.copytree(BUNDLED, out)
    return out


@pytest.mark.parametrize("backend", ["opencv", pytest.param("caffe", marks=pytest.mark.caffe)])
def test_changed_weights_are_refused_naming_the_file(tmp_path, backend, request):
    """Weights with values moved about (the right size, a valid protobuf) loaded and
    predicted garbage; model.json's sha256 now catches them."""
    if backend == "caffe":
        request.getfixturevalue("caffe")
    from tcdcn.landmarks import LandmarkModel
    folder = _copy(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    name = meta["files" if backend == "caffe" else "files_opencv"]["weights"]
    data = bytearray((folder / name).read_bytes())
    data[-8:-4], data[-4:] = data[-4:], data[-8:-4]   # two floats swapped: still loads
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{name}: sha256 .* differs"):
        LandmarkModel(folder, backend=backend)


def test_every_bundled_model_file_has_its_hash_recorded():
    from tcdcn.models import sha256_file
    for folder in sorted(p for p in (REPO / "models").iterdir() if (p / "model.json").is_file()):
        meta = json.loads((folder / "model.json").read_text())
        named = [f for f in folder.iterdir() if f.suffix in (".caffemodel", ".prototxt")]
        assert named, folder
        for f in named:
            assert meta["sha256"].get(f.name) == sha256_file(f), f


@pytest.mark.caffe
def test_an_input_size_the_net_does_not_take_is_an_error(tmp_path, caffe):
    """model.json's input.size disagreeing with the deploy net aborted the process in the
    LocallyConnected layer's check; now it is an error naming the net."""
    from tcdcn.landmarks import LandmarkModel
    folder = _copy(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    meta["input"]["size"] = 48
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"deploy.prototxt: takes 40x40 inputs, but model.json's input.size is 48"):
        LandmarkModel(folder, backend="caffe")


def test_opencv_without_the_caffe_importer_reads_the_onnx_export(monkeypatch, tmp_path):
    """OpenCV 5 has no cv2.dnn.readNetFromCaffe: the opencv backend reads the ONNX files
    and gives the same outputs; a model folder without them says what to run."""
    import cv2
    from tcdcn.landmarks import LandmarkModel
    crops = np.random.default_rng(0).integers(0, 256, (4, 1, 40, 40)).astype(np.float32)
    before = LandmarkModel(BUNDLED, backend="opencv").forward(crops)
    monkeypatch.delattr(cv2.dnn, "readNetFromCaffe", raising=False)
    after = LandmarkModel(BUNDLED, backend="opencv").forward(crops)
    assert max(float(np.abs(before[k] - after[k]).max()) for k in before) < 1e-4
    folder = _copy(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    del meta["files_onnx"]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match=r"no ONNX export .*no Caffe importer.*export_onnx.py"):
        LandmarkModel(folder, backend="opencv")


def test_haar_without_opencv_s_cascades_says_what_to_do(monkeypatch):
    """OpenCV 5 removed cv2.CascadeClassifier: detector="haar" is a clear ImportError."""
    import cv2
    from tcdcn.api import Detector
    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    with pytest.raises(ImportError, match="no Haar cascades .*detector='mtcnn'"):
        Detector(detector="haar", backend="opencv")
