"""Inference and evaluation plumbing with an untrained model folder (no face data needed)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tcdcn.augment import crop_matrix, denormalise, square_crop, warp
from tcdcn.schemes import TASKS

pytestmark = pytest.mark.caffe


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, caffe):
    """A model folder like release_model.py writes, with random weights."""
    from tcdcn.net import NetOptions, deploy_net
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


def test_points_map_back_to_the_image(model_dir, caffe):
    from tcdcn.inference import LandmarkModel
    model = LandmarkModel(model_dir, batch=4)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    boxes = np.array([[10, 20, 60, 70], [80, 10, 150, 90], [0, 0, 40, 40]], float)
    faces = model.predict(image, boxes)
    assert len(faces) == 3
    for box, face in zip(boxes, faces):
        centre, side = square_crop(box)
        m = crop_matrix(centre, side, 40)
        crop = warp(image, m, 40).astype(np.float32)[None, None]
        model.net.blobs["data"].reshape(1, 1, 40, 40)
        model.net.blobs["data"].data[...] = crop
        out = model.net.forward()
        pts = denormalise(out["landmarks"].reshape(-1, 2), 40)
        # crop coordinates -> image: x = centre + (x_crop + 0.5 - 20) * side / 40
        expected = centre + (pts + 0.5 - 20) * side / 40
        np.testing.assert_allclose(face.landmarks, expected, atol=1e-3)
        for t in TASKS:
            label, prob = face.attributes[t.name]
            assert label in t.classes and 0 < prob <= 1
    model._set_batch(4)


def test_batches_give_the_same_answers(model_dir):
    from tcdcn.inference import LandmarkModel
    image = np.random.default_rng(2).integers(0, 256, (100, 100), dtype=np.uint8)
    boxes = np.array([[5 + i, 5, 55 + i, 55] for i in range(7)], float)
    one = LandmarkModel(model_dir, batch=1).predict(image, boxes)
    many = LandmarkModel(model_dir, batch=3).predict(image, boxes)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-4)


def test_detector_api_returns_empty_list_without_faces(model_dir):
    from tcdcn.api import Detector
    faces = Detector(model_dir)(np.full((200, 200, 3), 128, np.uint8))
    assert faces == []


def test_detector_api_with_given_boxes_and_image_kinds(model_dir, tmp_path):
    from tcdcn.api import Detector
    det = Detector(model_dir)
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    box = [[10, 10, 60, 60]]
    ref = det(bgr, boxes=box)[0].landmarks
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    np.testing.assert_allclose(det(bgra, boxes=box)[0].landmarks, ref, atol=1e-4)
    cv2.imwrite(str(tmp_path / "x.png"), bgr)
    np.testing.assert_allclose(det(tmp_path / "x.png", boxes=box)[0].landmarks, ref, atol=1e-4)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg: not an image"):
        det(tmp_path / "bad.jpg")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        det(tmp_path / "missing.png")


def test_calibration_moves_boxes():
    from tcdcn.detect import Calibration
    out = Calibration(dx=0.1, dy=-0.2, scale=2.0).apply(np.array([[0, 0, 10, 10]]))
    np.testing.assert_allclose(out, [[-4, -7, 16, 13]])  # centre (6, 3), side 20


def test_evaluation_on_synthetic_faces(model_dir, dataset):
    """evaluate() runs end to end on list, landmark and detector boxes; an untrained model
    is far off, and the report says so."""
    from tcdcn.evaluation import evaluate
    from tcdcn.inference import LandmarkModel
    from tcdcn.lmdb_build import load_samples
    samples, _, _ = load_samples("mtfl", dataset)
    model = LandmarkModel(model_dir)
    for mode in ("list", "landmarks", "detector"):
        r = evaluate(model, samples, mode)
        assert r["n_faces"] == len(samples)
        if mode == "detector":   # Haar finds no face in dot images: all misses, all failures
            assert r["misses"] == len(samples) and r["failure_rate"] == 100.0
        else:
            assert r["misses"] == 0 and r["nme_mean"] > 10
            assert set(r["attributes"]) == {t.name for t in TASKS}


def test_list_boxes_required_for_list_mode(model_dir, dataset):
    from tcdcn.datasets import DataError
    from tcdcn.evaluation import evaluate
    from tcdcn.inference import LandmarkModel
    from tcdcn.lmdb_build import load_samples
    (dataset / "CNN_FacePoint" / "trainImageList.txt").unlink()   # no boxes any more
    samples, _, _ = load_samples("mtfl", dataset)
    with pytest.raises(DataError, match="has no box for this face"):
        evaluate(LandmarkModel(model_dir), samples, "list")
