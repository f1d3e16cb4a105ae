"""tools/detect.py over images, a folder and a video; bad files are counted, exit code 1."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import REPO, run

pytestmark = [pytest.mark.caffe, pytest.mark.slow]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import skimage.data
    root = tmp_path_factory.mktemp("media")
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    (root / "photos").mkdir()
    cv2.imwrite(str(root / "photos" / "a.jpg"), img)
    cv2.imwrite(str(root / "photos" / "b.png"), cv2.flip(img, 1))
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
    for k in range(12):   # the face drifting right by 1 px a frame
        m = np.float32([[0.5, 0, k], [0, 0.5, 0]])
        writer.write(cv2.warpAffine(img, m, (256, 256), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return root


def test_images_folder_and_video(model_dir, media, tmp_path, python_exe):
    out = tmp_path / "out"
    res = run([python_exe, REPO / "tools" / "detect.py", media / "photos", media / "clip.avi",
               "--model", model_dir, "--out", out, "--annotate", "--smooth", "--batch", "2"])
    assert res.returncode == 1, "a broken file makes the exit code 1"
    assert "broken.jpg" in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 4 and summary["failed"] == 1
    lines = [json.loads(l) for l in (out / "faces.jsonl").read_text().splitlines()]
    images = [l for l in lines if "frame" not in l]
    frames = [l for l in lines if "frame" in l]
    assert sorted(l["path"].rsplit("/", 1)[1] for l in images) == ["a.jpg", "b.png"]
    assert all(len(l["faces"]) >= 1 for l in images)
    assert [l["frame"] for l in frames] == list(range(12))
    assert sum(len(l["faces"]) > 0 for l in frames) >= 10
    face = images[0]["faces"][0]
    assert set(face) == {"box", "score", "landmarks", "attributes"} and len(face["landmarks"]) == 5
    assert (out / "a.png").is_file() and (out / "clip.mp4").is_file()


def test_given_boxes(model_dir, media, tmp_path, python_exe):
    boxes = tmp_path / "boxes.txt"
    boxes.write_text(f"{media / 'photos' / 'a.jpg'} 170 60 270 170\n")
    res = run([python_exe, REPO / "tools" / "detect.py", media / "photos" / "a.jpg", "--model",
               model_dir, "--out", tmp_path / "o", "--boxes", boxes])
    assert res.returncode == 0, res.stderr
    faces = json.loads((tmp_path / "o" / "faces.jsonl").read_text())["faces"]
    assert len(faces) == 1 and faces[0]["box"] == [170, 60, 270, 170]
    boxes.write_text("a.jpg 1 2 3\n")
    res = run([python_exe, REPO / "tools" / "detect.py", media / "photos" / "a.jpg", "--model",
               model_dir, "--out", tmp_path / "o2", "--boxes", boxes])
    assert res.returncode != 0 and "boxes.txt:1: expected 'image left top right bottom'" in res.stderr


def test_one_euro_smoothing_reduces_jitter():
    """Measured effect: on a still point with 1 px noise the filtered track jitters less,
    and on a point moving 2 px/frame it lags by less than 3 px."""
    from tcdcn.smoothing import OneEuro
    rng = np.random.default_rng(0)
    still = 100 + rng.normal(0, 1.0, size=(300, 1))
    f = OneEuro()
    smoothed = np.array([f(x, 1 / 30) for x in still])
    assert smoothed[30:].std() < 0.5 * still[30:].std()
    moving = np.arange(300)[:, None] * 2.0 + rng.normal(0, 1.0, size=(300, 1))
    g = OneEuro()
    track = np.array([g(x, 1 / 30) for x in moving])
    assert np.abs(track[60:] - np.arange(300)[60:, None] * 2.0).mean() < 3
