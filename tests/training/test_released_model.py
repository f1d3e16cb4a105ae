"""The committed model: it describes itself, runs through both backends alike on real faces,
and finds the demo's face."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.helpers import REPO

MODEL = REPO / "models" / "tcdcn_5pt"
from tests.helpers import SHARED_DATA as SHARED  # noqa: E402

# crop units (1 = the crop's side) and probabilities; the README gives the measured value
PARITY_TOLERANCE = 1e-4


def test_model_folder_describes_itself():
    meta = json.loads((MODEL / "model.json").read_text())
    assert meta["input"]["size"] == 40 and meta["input"]["channels"] == 1
    assert meta["landmark_scheme"] == "5pt" and len(meta["landmark_names"]) == 5
    assert set(meta["attributes"]) == {"gender", "smile", "glasses", "pose"}
    assert "train.py" in meta["training"]["command"] and len(meta["commit"]) >= 40
    for key in ("validation_list_boxes", "aflw_landmark_boxes", "aflw_haar_boxes"):
        assert meta["numbers"][key]["n_faces"] > 0
    assert (MODEL / meta["files"]["weights"]).is_file()
    assert (MODEL / meta["files_opencv"]["weights"]).is_file()
    assert meta["net_options"]["uncertainty"] in ("laplace", "gaussian")
    assert meta["uncertainty_calibration"]["factor"] > 0
    assert "--stages uncertainty" in meta["training"]["uncertainty"]["command"]


def real_faces():
    """The astronaut, and AFLW test faces when the shared data is here."""
    import skimage.data
    from tcdcn.boxes import box_from_landmarks
    faces = [(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY),
              np.array([[170.0, 60.0, 275.0, 170.0]]))]
    if (SHARED / "MTFL" / "testing.txt").is_file():
        from tcdcn.data.datasets import read_mtfl
        for s in read_mtfl(SHARED / "MTFL" / "testing.txt", SHARED / "MTFL")[:40]:
            faces.append((cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE),
                          box_from_landmarks(s.landmarks)[None]))
    return faces


@pytest.mark.caffe
def test_opencv_backend_matches_caffe_on_real_faces():
    from tcdcn.landmarks import LandmarkModel
    a, b = LandmarkModel(MODEL, backend="caffe"), LandmarkModel(MODEL, backend="opencv")
    worst = 0.0
    for image, boxes in real_faces():
        crops, _ = a.crops(image, boxes)
        ra, rb = a.forward(crops), b.forward(crops)
        worst = max(worst, max(float(np.abs(ra[k] - rb[k]).max()) for k in ra))
    assert worst < PARITY_TOLERANCE, worst


def test_opencv_backend_alone_needs_no_caffe(python_exe):
    """In a fresh interpreter where importing caffe fails, the OpenCV backend still works."""
    from tests.helpers import run
    script = ("import sys; sys.modules['caffe'] = None\n"
              "from tcdcn.landmarks import LandmarkModel\n"
              "import numpy as np\n"
              f"m = LandmarkModel({str(MODEL)!r}, backend='opencv')\n"
              "out = m.forward(np.zeros((2, 1, 40, 40), np.float32))\n"
              "print(out['landmarks'].shape)\n")
    res = run([python_exe, "-c", script])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(2, 10)"


@pytest.mark.caffe
def test_demo_finds_and_marks_the_astronaut(tmp_path, python_exe):
    from tests.helpers import run
    res = run([python_exe, REPO / "tools" / "demo.py", "--out", tmp_path])
    assert res.returncode == 0, res.stderr
    faces = json.loads((tmp_path / "astronaut.json").read_text())["faces"]
    assert len(faces) >= 1
    face = max(faces, key=lambda f: f["score"])
    (lx, ly), (rx, ry) = face["landmarks"][0], face["landmarks"][1]
    # her eyes are around (205, 110) and (245, 105) in the 512 x 512 photograph
    assert 185 < lx < 225 and 90 < ly < 130 and 225 < rx < 265 and 85 < ry < 125, face
    assert (tmp_path / "astronaut.png").is_file()


@pytest.mark.caffe
@pytest.mark.skipif(not (SHARED / "MTFL" / "testing.txt").is_file(), reason="AFLW not present")
def test_released_model_measures_what_model_json_says():
    """Re-measure the released model on the fixed AFLW slice release_model.py measured: a
    crop, coordinate, flip or metric bug moves the NME far beyond this tolerance."""
    from tcdcn.data.datasets import read_mtfl
    from tcdcn.evaluation.evaluate import evaluate
    from tcdcn.landmarks import LandmarkModel
    meta = json.loads((MODEL / "model.json").read_text())
    stored = meta["numbers"].get("aflw_first_300_landmark_boxes")
    if stored is None:
        pytest.skip("this release has no regression slice")
    aflw = read_mtfl(SHARED / "MTFL" / "testing.txt", SHARED / "MTFL")[:300]
    report = evaluate(LandmarkModel(MODEL), aflw, "landmarks", refine=meta.get("refine", 0))
    assert abs(report["nme_mean"] - stored["nme_mean"]) < 0.01, (report["nme_mean"], stored)
    assert abs(report["failure_rate"] - stored["failure_rate"]) < 0.5


@pytest.mark.caffe
def test_released_uncertainty_in_the_api_the_json_and_the_drawing(tmp_path, python_exe):
    """The bundled model's uncertainty head: a few pixels per point on the astronaut's
    sharp frontal face, a high quality, both in detect.py's JSON, rings in --annotate."""
    import skimage.data
    from tcdcn.api import Detector, draw

    from tests.helpers import run
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    faces = Detector(MODEL)(image)
    face = max(faces, key=lambda f: f.score)
    assert face.uncertainty.shape == (5,) and np.all((face.uncertainty > 0.2)
                                                      & (face.uncertainty < 10))
    assert 0.5 < face.quality <= 1
    plain = face.__class__(**{**face.__dict__, "uncertainty": None, "quality": None})
    assert (draw(image, [face]) != draw(image, [plain])).any()      # the rings
    # a blurred, darkened copy: larger predicted errors, a lower quality
    worse = (cv2.GaussianBlur(image, (0, 0), 4) * 0.35).astype(np.uint8)
    again = Detector(MODEL).model.predict(worse, face.box[None])[0]
    assert again.uncertainty.mean() > face.uncertainty.mean() and again.quality < face.quality
    cv2.imwrite(str(tmp_path / "a.png"), image)
    res = run([python_exe, REPO / "tools" / "detect.py", tmp_path / "a.png", "--out",
               tmp_path / "out", "--model", MODEL])
    assert res.returncode == 0, res.stderr
    record = json.loads((tmp_path / "out" / "faces.jsonl").read_text().splitlines()[0])
    best = max(record["faces"], key=lambda f: f["score"])
    assert len(best["uncertainty"]) == 5 and 0 < best["quality"] <= 1


@pytest.mark.caffe
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "MTFL" / "testing.txt").is_file(), reason="data not present")
def test_released_uncertainty_measures_what_model_json_says():
    """Spearman and AUROC on the validation split (rebuilt from model.json) as
    tools/attach_uncertainty.py measured them."""
    from tcdcn.evaluation.evaluate import evaluate
    from tcdcn.landmarks import LandmarkModel
    from tcdcn.training.release import validation_split
    meta = json.loads((MODEL / "model.json").read_text())
    stored = meta["uncertainty_numbers"]["validation_list_boxes"]
    _, val = validation_split(MODEL, SHARED)
    u = evaluate(LandmarkModel(MODEL), val, "list")["uncertainty"]
    for key in ("spearman_face", "spearman_point", "auroc_failures", "auroc_over_5",
                "mean_predicted_nme"):
        assert u[key] == pytest.approx(stored[key], abs=1e-3), key
    assert u["n_failures"] == stored["n_failures"]


@pytest.mark.caffe
def test_refresh_deploy_rewrites_only_an_equal_net(caffe, tmp_path, python_exe):
    """release_model.py --refresh-deploy: a stale deploy.prototxt of the same function is
    rewritten from net.py; one whose net.py twin computes something else is refused."""
    import shutil

    from tests.helpers import run
    for name in ("same", "other"):
        shutil.copytree(MODEL, tmp_path / name)
    deploy = tmp_path / "same" / "deploy.prototxt"
    current = deploy.read_text()
    deploy.write_text(current.replace("# Generated", "# An older copy, generated"))
    out = run([python_exe, REPO / "tools" / "release_model.py", "--refresh-deploy",
               tmp_path / "same"])
    assert out.returncode == 0 and "max difference 0.0e+00" in out.stdout, out.stderr
    assert deploy.read_text() == current
    meta_path = tmp_path / "other" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["net_options"]["landmark_activation"] = "linear"   # net.py would drop the tanh
    meta_path.write_text(json.dumps(meta))
    before = (tmp_path / "other" / "deploy.prototxt").read_text()
    out = run([python_exe, REPO / "tools" / "release_model.py", "--refresh-deploy",
               tmp_path / "other"])
    assert out.returncode == 1 and "release the model again" in out.stderr
    assert (tmp_path / "other" / "deploy.prototxt").read_text() == before
