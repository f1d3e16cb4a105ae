"""Inference and evaluation plumbing with an untrained model folder (no face data needed)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from tcdcn.geometry import denormalise, face_crop, square_crop
from tcdcn.schemes import TASKS

pytestmark = pytest.mark.caffe


def test_points_map_back_to_the_image(model_dir, caffe):
    from tcdcn.landmarks import LandmarkModel
    model = LandmarkModel(model_dir, batch=4)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    boxes = np.array([[10, 20, 60, 70], [80, 10, 150, 90], [0, 0, 40, 40]], float)
    faces = model.predict(image, boxes)
    assert len(faces) == 3
    for box, face in zip(boxes, faces):
        centre, side = square_crop(box)
        crop = face_crop(image, box, 40)[0].astype(np.float32)[None, None]
        with model.nets.use() as held:
            out = held.forward(crop)
        pts = denormalise(out["landmarks"].reshape(-1, 2), 40)
        # crop coordinates -> image: x = centre + (x_crop + 0.5 - 20) * side / 40
        expected = centre + (pts + 0.5 - 20) * side / 40
        np.testing.assert_allclose(face.landmarks, expected, atol=1e-3)
        for t in TASKS:
            label, prob = face.attributes[t.name]
            assert label in t.classes and 0 < prob <= 1


def test_batches_give_the_same_answers(model_dir):
    from tcdcn.landmarks import LandmarkModel
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
    from tcdcn.detection.base import Calibration
    out = Calibration(dx=0.1, dy=-0.2, scale=2.0).apply(np.array([[0, 0, 10, 10]]))
    np.testing.assert_allclose(out, [[-4, -7, 16, 13]])  # centre (6, 3), side 20


def test_evaluation_on_synthetic_faces(model_dir, dataset):
    """evaluate() runs end to end on list, landmark and detector boxes; an untrained model
    is far off, and the report says so."""
    from tcdcn.data.datasets import load_samples
    from tcdcn.evaluation.evaluate import evaluate
    from tcdcn.landmarks import LandmarkModel
    samples, _, _ = load_samples("mtfl", dataset)
    model = LandmarkModel(model_dir)
    from tcdcn.evaluation.evaluate import find_boxes
    # boxes given from outside are the boxes used: shifting them moves the error
    boxes = find_boxes(model, samples, "landmarks")
    given = evaluate(model, samples, "landmarks", boxes=boxes)
    assert given["nme_mean"] == evaluate(model, samples, "landmarks")["nme_mean"]
    shifted = [b + np.array([15.0, 15.0, 15.0, 15.0]) for b in boxes]
    assert evaluate(model, samples, "landmarks", boxes=shifted)["nme_mean"] != given["nme_mean"]
    # the same number computed by hand from predict(): mean point error / eye distance
    import cv2
    nmes = []
    for s_, b in zip(samples, boxes):
        face = model.predict(cv2.imread(str(s_.image), cv2.IMREAD_GRAYSCALE), b[None])[0]
        iod = np.linalg.norm(s_.landmarks[0] - s_.landmarks[1])
        nmes.append(np.linalg.norm(face.landmarks - s_.landmarks, axis=1).mean() / iod)
    assert given["nme_mean"] == pytest.approx(100 * np.mean(nmes), rel=1e-6)
    refined = evaluate(model, samples, "list", refine=1)
    assert refined["refine"] == 1 and refined["misses"] == 0
    for mode in ("list", "landmarks", "detector"):
        r = evaluate(model, samples, mode)
        assert r["n_faces"] == len(samples)
        if mode == "detector":   # Haar finds no face in dot images: all misses, all failures
            assert r["misses"] == len(samples) and r["failure_rate"] == 100.0
        else:
            assert r["misses"] == 0 and r["nme_mean"] > 10
            assert set(r["attributes"]) == {t.name for t in TASKS}


def test_list_boxes_required_for_list_mode(model_dir, dataset):
    from tcdcn.data.datasets import DataError, load_samples
    from tcdcn.evaluation.evaluate import evaluate
    from tcdcn.landmarks import LandmarkModel
    (dataset / "CNN_FacePoint" / "trainImageList.txt").unlink()   # no boxes any more
    samples, _, _ = load_samples("mtfl", dataset)
    with pytest.raises(DataError, match="has no box for this face"):
        evaluate(LandmarkModel(model_dir), samples, "list")


def test_lc_as_convolution_matches_the_layer(caffe, tmp_path):
    """The rewrite on a general LocallyConnected layer (stride, pad, rectangular input)."""
    from tcdcn.export import lc_as_convolution
    (tmp_path / "lc.prototxt").write_text("""
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 6 } } }
layer { name: "lc" type: "LocallyConnected" bottom: "x" top: "y"
  locally_connected_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1
    weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }
""")
    net = caffe.Net(str(tmp_path / "lc.prototxt"), caffe.TEST)
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 6)).astype(np.float32)
    net.blobs["x"].data[...] = x
    y = net.forward()["y"].copy()
    w, b = lc_as_convolution(net.params["lc"][0].data, net.params["lc"][1].data, 5, 6, 3, 3,
                             (2, 2), (1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.einsum("nchw,ochw->no", xp, w) + b
    np.testing.assert_allclose(conv.reshape(y.shape), y, rtol=1e-4, atol=1e-4)


def test_opencv_export_matches_caffe(model_dir, tmp_path):
    import shutil

    from tcdcn.landmarks import LandmarkModel
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    out = run_tool("export_opencv.py", "--model", folder)
    assert out.returncode == 0, out.stdout + out.stderr
    with open(folder / "deploy_opencv.prototxt") as f:
        text = f.read()
    assert "LocallyConnected" not in text.split("\n", 1)[1]
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    boxes = np.array([[10, 20, 60, 70], [80, 10, 150, 90], [30, 30, 110, 110]], float)
    caffe_model = LandmarkModel(folder, backend="caffe")
    cv_model = LandmarkModel(folder, backend="opencv", batch=2)
    crops, _ = caffe_model.crops(image, boxes)
    raw_a, raw_b = caffe_model.forward(crops), cv_model.forward(crops)
    # crop units / probabilities; the two MVN implementations round apart, and this net's
    # random weights amplify that (the trained model agrees to 5e-6: export_opencv.py)
    for k in raw_a:
        np.testing.assert_allclose(raw_a[k], raw_b[k], atol=3e-4)
    a, b = caffe_model.predict(image, boxes), cv_model.predict(image, boxes)
    for fa, fb in zip(a, b):
        np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-2)   # pixels
        for t in TASKS:
            assert fa.attributes[t.name][0] == fb.attributes[t.name][0]
            assert abs(fa.attributes[t.name][1] - fb.attributes[t.name][1]) < 1e-4


def run_tool(name, *args):
    import sys

    from tests.helpers import REPO, run
    return run([sys.executable, REPO / "tools" / name, *args])



def mtcnn_dir():
    """The bundled MTCNN models (tcdcn/models/mtcnn)."""
    from tcdcn.models import bundled
    return bundled("mtcnn")


def test_bundled_mtcnn_models_are_the_authors_files():
    """Shipped unchanged, with their licence; when ../shared/models/mtcnn is here, the same
    bytes."""
    import hashlib

    from tests.helpers import SHARED_MODELS
    folder = mtcnn_dir()
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert "kpzhang93/MTCNN_face_detection_alignment" in (folder / "README.md").read_text()
    shared = SHARED_MODELS / "mtcnn"
    for name in ("det1", "det2", "det3"):
        for ext in ("prototxt", "caffemodel"):
            ours = folder / f"{name}.{ext}"
            assert ours.is_file() and ours.stat().st_size > 0
            if (shared / ours.name).is_file():
                assert hashlib.sha256(ours.read_bytes()).digest() == \
                    hashlib.sha256((shared / ours.name).read_bytes()).digest()


def test_mtcnn_finds_the_astronaut():
    import skimage.data
    from tcdcn.detection.mtcnn import MTCNNDetector
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    boxes, scores = MTCNNDetector(mtcnn_dir()).raw(image)
    assert len(boxes) == 1 and scores[0] > 0.9
    l, t, r, b = boxes[0]
    # her face: roughly x 180-265, y 60-175 in the 512 x 512 image
    assert 150 < l < 200 and 240 < r < 300 and 30 < t < 90 and 150 < b < 200
    # nothing in a flat image
    assert len(MTCNNDetector(mtcnn_dir()).raw(np.full((200, 200, 3), 90, np.uint8))[0]) == 0


def test_mtcnn_points_and_face_check_on_the_astronaut():
    """O-Net's five points land on her eyes, nose and mouth (MTFL order); the face check
    scores her box high and an empty wall low; crops from the points use the box rule."""
    import skimage.data
    from tcdcn.boxes import MTFL_BOX_RULE, box_from_landmarks
    from tcdcn.detection.mtcnn import MTCNNDetector
    from tcdcn.detection.search import FromPoints
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    det = MTCNNDetector(mtcnn_dir())
    boxes, scores, points = det.raw_points(image)
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = points[0]
    # her eyes are around (205, 110) and (245, 105) (tests/test_released_model.py)
    assert 190 < lx < 220 and 95 < ly < 125 and 230 < rx < 260 and 90 < ry < 120, points[0]
    assert max(ly, ry) < ny < min(mly, mry) and lx < rx and mlx < mrx
    assert det.face_scores(image, boxes)[0] > 0.9
    assert det.face_scores(image, [[380, 380, 470, 470]])[0] < 0.5   # part of her suit
    placed, _ = FromPoints(det, MTFL_BOX_RULE)(image)
    np.testing.assert_allclose(placed[0], box_from_landmarks(points[0], MTFL_BOX_RULE))


@pytest.mark.caffe
def test_mtcnn_backends_agree(caffe):
    """Our Caffe and stock OpenCV dnn run the same MTCNN: same boxes, scores and points."""
    import skimage.data
    from tcdcn.detection.mtcnn import MTCNNDetector

    from tests.helpers import SHARED_DATA
    images = [cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)]
    listing = SHARED_DATA / "MTFL" / "testing.txt"
    if listing.is_file():
        from tcdcn.data.datasets import read_mtfl
        images += [cv2.copyMakeBorder(cv2.imread(str(s.image)), 30, 30, 30, 30,
                                      cv2.BORDER_REPLICATE)
                   for s in read_mtfl(listing, SHARED_DATA / "MTFL")[:10]]
    a, b = MTCNNDetector(backend="opencv"), MTCNNDetector(backend="caffe")
    found = 0
    for image in images:
        ba, sa, pa = a.raw_points(image)
        bb, sb, pb = b.raw_points(image)
        assert len(ba) == len(bb)
        np.testing.assert_allclose(ba, bb, atol=0.05)
        np.testing.assert_allclose(sa, sb, atol=1e-4)
        np.testing.assert_allclose(pa, pb, atol=0.05)
        found += len(ba)
    assert found >= len(images) - 1


def test_mtcnn_opencv_nets_run_unfused_with_the_same_results():
    """tcdcn.detection.mtcnn loads MTCNN's nets with OpenCV's layer fusion off (faster with their
    PReLUs): the classic cascade and the S-Net path find the same boxes, scores and points,
    to the bit, as with OpenCV's default (fusion on)."""
    import skimage.data
    from tcdcn.detection.mtcnn import MTCNNDetector
    from tcdcn.detection.snet import SNetNet
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    ours, fused = MTCNNDetector(backend="opencv"), MTCNNDetector(backend="opencv")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, 48)).astype(np.float32)
    with fused.nets.use() as nets:
        for net in nets:
            net.enableFusion(True)
    timings = []
    for det in (ours, fused):   # the loaded nets differ in how they run, not in what
        with det.nets.use() as nets:
            nets[2].setInput(x)
            nets[2].forward(["prob1"])
            timings.append(np.count_nonzero(nets[2].getPerfProfile()[1]))
    assert timings[0] > timings[1]   # unfused: the PReLUs run as layers of their own
    for snet in (False, True):
        first = SNetNet() if snet else None
        a, b = (det.variant(first_stage=first).raw_points(image) for det in (ours, fused))
        assert len(a[0]) >= 1
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_mtcnn_crops_match_a_crop_by_crop_reference():
    """mtcnn._crops (all crops converted at once) against the plain recipe, crop by crop:
    resample the box to size x size (border 128, or 127.5 on the float input), RGB,
    (v - 127.5) / 128, transposed to C x W x H for the Matlab-trained nets."""
    from tcdcn.detection.mtcnn import _crops
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 5.0, 60.0, 55.0, 0.9], [-20.0, 40.0, 30.0, 95.0, 0.5],
                      [70.3, 11.7, 118.9, 60.2, 0.7]])
    for img, border in ((image, 128), ((image.astype(np.float32) - 127.5) / 128, 127.5)):
        for size in (24, 48):
            got = _crops(img, boxes, size)
            assert got.shape == (3, 3, size, size) and got.dtype == np.float32
            for i, (x1, y1, x2, y2, _) in enumerate(boxes):
                sx, sy = size / (x2 - x1 + 1), size / (y2 - y1 + 1)
                crop = cv2.warpAffine(img, np.array([[sx, 0, -x1 * sx], [0, sy, -y1 * sy]]),
                                      (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=(border,) * 3)
                if img.dtype == np.uint8:
                    crop = (crop[..., ::-1].astype(np.float32) - 127.5) / 128
                np.testing.assert_array_equal(got[i], crop.transpose(2, 1, 0))
    assert _crops(image, np.zeros((0, 5)), 48).shape == (0, 3, 48, 48)


def test_mtcnn_keeps_the_classic_stages_of_an_image_for_its_last_resort(monkeypatch):
    """Within one search (base.Search), the classic search keeps P-Net's candidates and
    R-Net's outputs per image: the same image again (the last resort's other R-Net / O-Net
    bars, in a variant) runs neither net and finds what a fresh detector finds; other
    pixels and a new search run them again; at most KEEP_AT_MOST images are kept."""
    import skimage.data
    from tcdcn.detection import mtcnn
    from tcdcn.detection.base import Search
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[:300, 80:380]
    runs = []
    real = mtcnn.MTCNNDetector._stages_1_2
    monkeypatch.setattr(mtcnn.MTCNNDetector, "_stages_1_2",
                        lambda self, *a: runs.append(1) or real(self, *a))
    det = mtcnn.MTCNNDetector()
    search = Search()
    first = det.raw_points(image, search=search)
    assert len(runs) == 1 and len(first[0]) == 1
    relaxed = det.variant(thresholds=mtcnn.LAST_RESORT)
    for searcher, thresholds in ((det, mtcnn.THRESHOLDS), (relaxed, mtcnn.LAST_RESORT)):
        got = searcher.raw_points(image, search=search)
        assert len(runs) == 1
        fresh = mtcnn.MTCNNDetector(thresholds=thresholds).raw_points(image)
        assert len(runs) == 2
        runs.pop()
        for a, b in zip(got, fresh):
            np.testing.assert_array_equal(a, b)
    det.raw_points(image[::-1].copy(), search=search)
    assert len(runs) == 2
    det.raw_points(image, search=Search())
    assert len(runs) == 3
    for k in range(mtcnn.KEEP_AT_MOST + 3):
        det.raw_points(image[k:], search=search)
    assert len(search._memo["mtcnn"]) == mtcnn.KEEP_AT_MOST


def test_mtcnn_lazy_stages_find_the_same_faces_with_fewer_crops(monkeypatch):
    """The lazy R-Net / O-Net (mtcnn.LAZY) against the authors' cascade (every box through
    every stage): the same faces, boxes within a few pixels, and fewer crops evaluated; a
    rejected best box still lets its neighbours through (the second pass)."""
    import skimage.data
    from tcdcn.detection import mtcnn
    from tcdcn.detection.base import iou

    from tests.helpers import SHARED_DATA
    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    images = [astronaut, np.hstack([astronaut[:300, 100:350]] * 3)]   # one face, then three
    listing = SHARED_DATA / "MTFL" / "testing.txt"
    if listing.is_file():
        from tcdcn.data.datasets import read_mtfl
        images += [cv2.copyMakeBorder(cv2.imread(str(s.image)), 20, 20, 20, 20,
                                      cv2.BORDER_REPLICATE)
                   for s in read_mtfl(listing, SHARED_DATA / "MTFL")[:12]]
    crops = {24: 0, 48: 0}
    real = mtcnn._crops

    def counted(image, boxes, size):
        crops[size] += len(boxes)
        return real(image, boxes, size)

    monkeypatch.setattr(mtcnn, "_crops", counted)
    authors = mtcnn.MTCNNDetector(lazy=(1.0, 1.0))
    lazy = mtcnn.MTCNNDetector()
    assert lazy.lazy == mtcnn.LAZY and min(mtcnn.LAZY) < 1
    n_authors, n_lazy, faces = {24: 0, 48: 0}, {24: 0, 48: 0}, 0
    for image in images:
        before = dict(crops)
        a, _ = authors.raw(image)
        middle = dict(crops)
        b, _ = lazy.raw(image)
        for k in crops:
            n_authors[k] += middle[k] - before[k]
            n_lazy[k] += crops[k] - middle[k]
        assert len(a) == len(b), image.shape
        for box in a:   # every face of the full cascade is found, within a few pixels
            best = max(iou(box, other) for other in b)
            assert best > 0.75, (box, b)
        faces += len(a)
    assert faces >= len(images) + 1   # three faces in the second image
    assert n_lazy[48] < 0.6 * n_authors[48], (n_lazy, n_authors)
    assert n_lazy[24] <= n_authors[24]
    # a rejected first-pass box: with an O-Net threshold nothing passes, the second pass
    # runs the suppressed neighbours too (as many O-Net crops as the full cascade)
    crops.update({24: 0, 48: 0})
    strict = mtcnn.MTCNNDetector(thresholds=(0.6, 0.7, 1.0), lazy=(1.0, 0.3))
    assert len(strict.raw(astronaut)[0]) == 0
    lazy_48 = crops[48]
    crops.update({24: 0, 48: 0})
    assert len(mtcnn.MTCNNDetector(thresholds=(0.6, 0.7, 1.0), lazy=(1.0, 1.0)).raw(astronaut)[0]) == 0
    assert lazy_48 == crops[48] > 1


def test_mtcnn_rejects_bad_nms_and_lazy_settings():
    from tcdcn.detection.mtcnn import MTCNNDetector
    with pytest.raises(ValueError, match="lazy"):
        MTCNNDetector(lazy=(0.5,))
    with pytest.raises(ValueError, match="nms_thresholds"):
        MTCNNDetector(nms_thresholds=(0.5, 0.7, 0.7, 0))


def test_mtcnn_missing_models_say_where_to_get_them(tmp_path):
    from tcdcn.detection.mtcnn import MTCNNDetector
    with pytest.raises(FileNotFoundError, match="kpzhang93/MTCNN_face_detection_alignment"):
        MTCNNDetector(tmp_path)


def test_mtcnn_corrupt_model_names_the_file(tmp_path):
    import shutil

    from tcdcn.detection.mtcnn import MTCNNDetector
    for f in mtcnn_dir().glob("det*"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "det2.caffemodel").write_bytes(b"not a caffemodel")
    with pytest.raises(ValueError, match="det2.caffemodel"):
        MTCNNDetector(tmp_path)


def test_haar_finds_the_astronaut():
    import skimage.data
    from tcdcn.detection.haar import HaarDetector
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    boxes, _ = HaarDetector().raw(grey)
    centres = [((l + r) / 2, (t + b) / 2) for l, t, r, b in boxes]
    assert any(190 < x < 260 and 80 < y < 150 for x, y in centres), boxes


@pytest.mark.slow
def test_mtcnn_recall_tool_on_a_few_validation_faces(tmp_path, python_exe):
    """tools/mtcnn_recall.py (the numbers behind mtcnn.LAZY, NMS and the borders): every
    setting on the three sets, the lazy ones running no more O-Net crops than the authors'
    cascade, the default row carrying the package's defaults."""
    import json

    from tcdcn.detection import mtcnn
    from tcdcn.detection.search import DEFAULT_PADS, DEFAULT_TURNS

    from tests.helpers import REPO, SHARED_DATA, run
    if not (SHARED_DATA / "300W").is_dir() or not (SHARED_DATA / "MTFL").is_dir():
        pytest.skip("needs ../shared/data (300W and MTFL)")
    out = tmp_path / "recall.json"
    res = run([python_exe, REPO / "tools" / "mtcnn_recall.py", "--limit", "4", "--framed", "8",
               "--rolled", "8", "--json", out])
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert len(report["sets"]) == 4
    assert report["default"]["nms"] == list(mtcnn.NMS)
    assert report["default"]["turns"] == list(DEFAULT_TURNS)
    for rows in report["sets"].values():
        authors, lazy = rows["authors' cascade"], rows["lazy O-Net (before)"]
        default = rows["default (S-Net; classic search where it finds none)"]
        classic = rows["+ last resort (classic cascade)"]
        alone = rows["S-Net proposals alone (no classic search)"]
        assert authors["faces"] == default["faces"] == 4 and authors["lazy"] == [1.0, 1.0]
        assert default["proposals"] == "snet" and classic["proposals"] == "pnet"
        # S-Net alone runs no R-Net; the default adds R-Net only where S-Net found nothing
        assert alone["rnet_crops_per_image"] == 0 and alone["missed"] >= default["missed"]
        assert default["rnet_crops_per_image"] <= classic["rnet_crops_per_image"]
        assert default["lazy"] == list(mtcnn.LAZY) and default["pads"] == list(DEFAULT_PADS)
        assert authors["turns"] == [90, 180, 270] and rows["+ at most 20 boxes to R-Net"][
            "max_candidates"] == 20
        assert default["last_resort"] == list(mtcnn.LAST_RESORT)
        assert default["fallback_min_face"] == mtcnn.FALLBACK_MIN_FACE
        before = rows["fallback classic search at every size (before)"]
        assert before["fallback_min_face"] == 1
        assert before["rnet_crops_per_image"] >= default["rnet_crops_per_image"]
        assert rows["+ tilts 30 degrees"]["last_resort"] is None
        # the same borders, O-Net lazy: never more O-Net crops than the authors' cascade
        assert lazy["onet_crops_per_image"] <= authors["onet_crops_per_image"]
        assert authors["onet_crops_per_image"] > 0 and classic["rnet_crops_per_image"] > 0
    # --only reruns a row and keeps the file's other rows as they were measured
    key = "default (S-Net; classic search where it finds none)"
    res = run([python_exe, REPO / "tools" / "mtcnn_recall.py", "--limit", "4", "--framed", "8",
               "--rolled", "8", "--only", "default", "--json", out])
    assert res.returncode == 0, res.stderr
    again = json.loads(out.read_text())
    assert again["reruns"][-1]["rows"] == [key]
    for set_name, rows in again["sets"].items():
        assert set(rows) == set(report["sets"][set_name])
        assert all(rows[k] == v for k, v in report["sets"][set_name].items() if k != key)
        assert rows[key]["faces"] == 4
    res = run([python_exe, REPO / "tools" / "mtcnn_recall.py", "--only", "nonsense", "--json",
               tmp_path / "x.json"])
    assert res.returncode == 2 and "no such row" in res.stderr

