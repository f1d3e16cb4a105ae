"""tools/detect.py over images, a folder and a video; bad files are counted, exit code 1."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import REPO, run

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
    assert set(face) == {"box", "score", "scheme", "landmarks", "attributes"}   # no head
    assert face["scheme"] == "5pt" and len(face["landmarks"]) == 5
    assert (out / "annotated" / "photos" / "a.jpg.png").is_file()
    assert (out / "annotated" / "clip.avi.mp4").is_file()


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
    from tcdcn.video.smoothing import OneEuro
    rng = np.random.default_rng(0)
    still = 100 + rng.normal(0, 1.0, size=(300, 1))
    f = OneEuro()
    smoothed = np.array([f(x, 1 / 30) for x in still])
    assert smoothed[30:].std() < 0.5 * still[30:].std()
    moving = np.arange(300)[:, None] * 2.0 + rng.normal(0, 1.0, size=(300, 1))
    g = OneEuro()
    track = np.array([g(x, 1 / 30) for x in moving])
    assert np.abs(track[60:] - np.arange(300)[60:, None] * 2.0).mean() < 3


def test_bad_boxes_files_are_named(model_dir, media, tmp_path, python_exe):
    image = media / "photos" / "a.jpg"
    base = [python_exe, REPO / "tools" / "detect.py", image, "--model", model_dir]
    res = run(base + ["--out", tmp_path / "o1", "--boxes", tmp_path / "missing.txt"])
    assert res.returncode == 1 and "missing.txt: no such boxes file" in res.stderr
    assert "Traceback" not in res.stderr
    for n, (line, message) in enumerate([
            (f"{image} 10 10 10 50", "empty or inverted box"),
            (f"{image} 50 10 10 60", "empty or inverted box"),
            (f"{image} nan 10 40 60", "non-finite"),
            (f"{image} 10 10 inf 60", "non-finite")]):
        boxes = tmp_path / f"b{n}.txt"
        boxes.write_text(line + "\n")
        res = run(base + ["--out", tmp_path / f"o{n + 2}", "--boxes", boxes])
        assert res.returncode == 1 and f"b{n}.txt:1: " in res.stderr and message in res.stderr
    # a BOM and a path that is relative to the working directory still match
    boxes = tmp_path / "bom.txt"
    boxes.write_bytes(b"\xef\xbb\xbf" + f"photos/a.jpg 170 60 270 170\n".encode())
    res = run(base[:2] + ["photos/a.jpg", "--model", model_dir, "--out", tmp_path / "o9",
                          "--boxes", boxes], cwd=media)
    assert res.returncode == 0, res.stderr
    faces = json.loads((tmp_path / "o9" / "faces.jsonl").read_text())["faces"]
    assert len(faces) == 1
    # boxes for an image that is not an input: an error, not a silent 0 faces
    boxes.write_text("elsewhere/a.jpg 170 60 270 170\n")
    res = run(base[:2] + ["photos/a.jpg", "--model", model_dir, "--out", tmp_path / "o10",
                          "--boxes", boxes], cwd=media)
    assert res.returncode == 1 and "not among the inputs" in res.stderr + res.stdout


def test_extreme_image_is_skipped_and_the_rest_kept(model_dir, media, tmp_path, python_exe):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "thin.png"), np.full((1, 20000, 3), 128, np.uint8))
    cv2.imwrite(str(folder / "a.jpg"), cv2.imread(str(media / "photos" / "a.jpg")))
    out = tmp_path / "out"
    res = run([python_exe, REPO / "tools" / "detect.py", folder, "--model", model_dir,
               "--out", out])
    summary = json.loads((out / "summary.json").read_text())
    lines = [json.loads(l) for l in (out / "faces.jsonl").read_text().splitlines()]
    good = [l for l in lines if l["path"].endswith("a.jpg")]
    assert good and len(good[0]["faces"]) >= 1, "the good image was lost"
    assert "Traceback" not in res.stderr


def test_annotations_never_overwrite_inputs(model_dir, media, tmp_path, python_exe):
    folder = tmp_path / "in"
    (folder / "x").mkdir(parents=True)
    (folder / "y").mkdir()
    img = cv2.imread(str(media / "photos" / "a.jpg"))
    cv2.imwrite(str(folder / "x" / "face.jpg"), img)
    cv2.imwrite(str(folder / "y" / "face.jpg"), cv2.flip(img, 1))
    before = {p: p.read_bytes() for p in folder.rglob("*.jpg")}
    res = run([python_exe, REPO / "tools" / "detect.py", folder, "--model", model_dir,
               "--out", folder, "--annotate"])
    assert res.returncode == 0, res.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert (folder / "annotated" / "x" / "face.jpg.png").is_file()
    assert (folder / "annotated" / "y" / "face.jpg.png").is_file()


def test_no_inputs_is_an_error(model_dir, tmp_path, python_exe):
    (tmp_path / "empty").mkdir()
    res = run([python_exe, REPO / "tools" / "detect.py", tmp_path / "empty", "--model",
               model_dir, "--out", tmp_path / "o"])
    assert res.returncode == 1 and "no images or videos" in res.stderr


def test_other_files_in_folders_are_reported(model_dir, media, tmp_path, python_exe):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), cv2.imread(str(media / "photos" / "a.jpg")))
    (folder / "anim.gif").write_bytes(b"GIF89a")
    (folder / "notes.txt").write_text("x")
    out = tmp_path / "out"
    res = run([python_exe, REPO / "tools" / "detect.py", folder, "--model", model_dir,
               "--out", out])
    assert res.returncode == 0, res.stderr
    assert "ignored 2 files" in res.stderr and ".gif 1" in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(Path(p).name for p in summary["ignored"]) == ["anim.gif", "notes.txt"]


def test_min_face(model_dir, media, tmp_path, python_exe):
    """--min-face: her face (about 100 px) is found at 20 and 80 px, not when the smallest
    face searched is larger than the image; a value under MTCNN's 12-px window is an error."""
    found = {}
    for px in (20, 80, 600):
        out = tmp_path / f"o{px}"
        res = run([python_exe, REPO / "tools" / "detect.py", media / "photos" / "a.jpg",
                   "--model", model_dir, "--out", out, "--min-face", str(px)])
        assert res.returncode == 0, res.stderr
        found[px] = len(json.loads((out / "faces.jsonl").read_text())["faces"])
    assert found == {20: 1, 80: 1, 600: 0}
    res = run([python_exe, REPO / "tools" / "detect.py", media / "photos" / "a.jpg",
               "--model", model_dir, "--out", tmp_path / "bad", "--min-face", "5"])
    assert res.returncode == 1 and "min_face must be" in res.stderr


def test_proposals(model_dir, media, tmp_path, python_exe):
    """--proposals: S-Net (default) and the classic cascade find her face in about the same
    place (O-Net gives both boxes); another value is refused by the parser."""
    boxes = {}
    for name in ("snet", "pnet"):
        out = tmp_path / name
        res = run([python_exe, REPO / "tools" / "detect.py", media / "photos" / "a.jpg",
                   "--model", model_dir, "--out", out, "--proposals", name])
        assert res.returncode == 0, res.stderr
        faces = json.loads((out / "faces.jsonl").read_text())["faces"]
        assert len(faces) == 1
        boxes[name] = np.array(faces[0]["box"])
    assert np.abs(boxes["snet"] - boxes["pnet"]).max() < 10, boxes
    res = run([python_exe, REPO / "tools" / "detect.py", media / "photos" / "a.jpg",
               "--model", model_dir, "--out", tmp_path / "bad", "--proposals", "rnet"])
    assert res.returncode == 2 and "--proposals" in res.stderr
