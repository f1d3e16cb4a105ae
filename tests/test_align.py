"""tcdcn-align: faces warped to a template, a Parquet row per face; the local and the Ray
engine give the same rows; a killed run started again ends with every input exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import REPO, run

ALIGN = REPO / "tools" / "align.py"
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def random_similarity(rng) -> np.ndarray:
    angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.5, 3.0)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, rng.uniform(-50, 200)], [s, c, rng.uniform(-50, 200)]])


def test_similarity_recovers_a_known_transform():
    from tcdcn.align.template import TEMPLATES, similarity
    rng = np.random.default_rng(0)
    tpl = np.array(TEMPLATES["arcface"].points)
    for _ in range(20):
        m = random_similarity(rng)
        face = tpl @ m[:, :2].T + m[:, 2]
        back = similarity(face, tpl)
        np.testing.assert_allclose(face @ back[:, :2].T + back[:, 2], tpl, atol=1e-9)
    with pytest.raises(ValueError, match="coincide"):
        similarity(np.zeros((5, 2)), tpl)


@pytest.mark.parametrize("name, size", [("arcface", None), ("arcface", 224), ("sphereface", None)])
def test_the_crop_puts_a_known_face_s_points_on_the_template(name, size):
    """Dots drawn where a face's five points are land, after the warp, on the template's
    points within 1 px (their centroids, found in the crop)."""
    from tcdcn.align.template import TEMPLATES, template, warp
    tpl = template(name, size)
    rng = np.random.default_rng(1)
    m = random_similarity(rng)
    m[:, :2] *= 2.5 / np.sqrt(abs(np.linalg.det(m[:, :2])))   # a face 2.5x the template
    points = np.array(TEMPLATES[name].points) @ m[:, :2].T + m[:, 2] + 300
    image = np.zeros((900, 900), np.uint8)
    for x, y in points:
        cv2.circle(image, (int(round(x * 16)), int(round(y * 16))), 5 * 16, 255, -1,
                   cv2.LINE_AA, shift=4)
    crop, _ = warp(image, points, tpl)
    assert crop.shape == (tpl.height, tpl.width)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats((crop > 60).astype(np.uint8))
    assert n - 1 == 5
    found = sorted(map(tuple, centroids[1:]), key=lambda p: (round(p[1] / 10), p[0]))
    want = sorted(tpl.points, key=lambda p: (round(p[1] / 10), p[0]))
    np.testing.assert_allclose(found, want, atol=1.0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut):
    """A folder with faces (the astronaut, turned copies), one without, one broken file,
    and a list file naming one more photo and a missing one."""
    root = tmp_path_factory.mktemp("photos")
    folder = root / "folder"
    (folder / "sub").mkdir(parents=True)
    for i, scale in enumerate((1.0, 0.6, 0.8)):
        cv2.imwrite(str(folder / f"face{i}.jpg"), cv2.resize(astronaut, None, fx=scale, fy=scale))
    cv2.imwrite(str(folder / "sub" / "mirror.png"), cv2.flip(astronaut, 1))
    cv2.imwrite(str(folder / "wall.png"), np.full((200, 240, 3), 120, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(root / "listed.jpg"), cv2.resize(astronaut, (300, 300)))
    (root / "list.txt").write_text("# photos\nlisted.jpg\nmissing.jpg\n")
    return root


def rows(out: Path) -> list[dict]:
    key = lambda r: (r["image"], r["frame"], r["face"])   # noqa: E731
    return sorted(pq.read_table(out / "faces.parquet").to_pylist(), key=key)


def align(python_exe, *args, **kwargs):
    return run([python_exe, ALIGN, "--quiet", *args],
               env={**os.environ, "GLOG_minloglevel": "2"}, **kwargs)


@pytest.fixture(scope="module")
def local_run(photos, tmp_path_factory, python_exe):
    out = tmp_path_factory.mktemp("local") / "out"
    res = align(python_exe, photos / "folder", photos / "list.txt", "--out", out,
                "--shard-size", "3", "--workers", "2", "--backend", "opencv")
    return out, res


def test_rows_crops_and_summary(local_run, photos):
    out, res = local_run
    assert res.returncode == 1, "a broken and a missing input make the exit code 1"
    got = rows(out)
    status = {Path(r["image"]).name: r["status"] for r in got}
    assert status["broken.jpg"] == "error" and status["missing.jpg"] == "error"
    assert status["wall.png"] == "no_face"
    faces = [r for r in got if r["status"] == "ok"]
    assert {Path(r["image"]).name for r in faces} >= {"face0.jpg", "face1.jpg", "face2.jpg",
                                                       "mirror.png", "listed.jpg"}
    for r in faces:
        crop = cv2.imread(str(out / r["crop"]))
        assert crop.shape == (112, 112, 3)
        assert len(r["five_points"]) == 5 and len(r["box"]) == 4 and r["gender"] in ("male", "female")
        # the bundled model's uncertainty head: a quality to filter alignments by
        assert len(r["uncertainty"]) == 5 and 0 <= r["quality"] <= 1
        assert Path(r["crop"]).name.startswith(Path(r["image"]).name + ".face")
    broken = next(r for r in got if r["image"].endswith("broken.jpg"))
    assert "broken.jpg" in broken["reason"] and broken["quality"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 8 and summary["failed"] == 2 and summary["no_face"] == 1
    assert summary["rows"] == len(got) and summary["engine"] == "local"
    assert set(summary["stage_seconds"]) == {"decode", "detect", "landmarks", "warp", "write"}


@pytest.mark.slow
def test_the_ray_engine_gives_the_same_rows(local_run, photos, tmp_path, python_exe):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    res = align(python_exe, photos / "folder", photos / "list.txt", "--out", out,
                "--shard-size", "3", "--workers", "2", "--backend", "opencv", "--engine", "ray")
    assert res.returncode == 1, res.stderr[-1500:]

    def comparable(r):   # crops are named alike under each --out
        return {k: v for k, v in r.items()}
    assert [comparable(r) for r in rows(out)] == [comparable(r) for r in rows(local_run[0])]
    assert json.loads((out / "summary.json").read_text())["engine"] == "ray"


def test_another_job_in_the_same_out_is_refused(local_run, photos, python_exe):
    out, _ = local_run
    res = align(python_exe, photos / "folder", "--out", out, "--backend", "opencv")
    assert res.returncode == 1 and "holds a job with other inputs" in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_killed_run_resumes_to_every_input_exactly_once(astronaut, tmp_path, python_exe,
                                                          engine):
    if engine == "ray":
        pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    small = cv2.resize(astronaut, (256, 256))
    for i in range(40):
        cv2.imwrite(str(folder / f"p{i:02d}.jpg"), np.roll(small, i, axis=1))
    out = tmp_path / "out"
    args = [python_exe, ALIGN, "--quiet", folder, "--out", out, "--shard-size", "2",
            "--workers", "2", "--backend", "opencv", "--engine", engine]
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "GLOG_minloglevel": "2"})
    parts = out / "faces.parquet"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("part-*.parquet"))) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)   # the driver and every worker, mid-run
    proc.communicate(timeout=60)
    finished = sorted(parts.glob("part-*.parquet"))
    assert 3 <= len(finished) < 20, "killed mid-run"
    for part in finished:            # what is visible is whole
        pq.read_table(part)
    res = align(python_exe, folder, "--out", out, "--shard-size", "2", "--workers", "2",
                "--backend", "opencv", "--engine", engine)
    assert res.returncode == 0, res.stderr[-1500:]
    assert "resuming" in res.stderr
    images = [r["image"] for r in rows(out)]
    assert sorted(set(images)) == sorted(str(p) for p in folder.iterdir())
    per_image = {i: images.count(i) for i in set(images)}
    faces = pq.read_table(out / "faces.parquet").to_pylist()
    assert len(faces) == sum(per_image.values())
    # exactly once: each image's rows are one shard's (no duplicate faces)
    assert len({(r["image"], r["face"]) for r in faces}) == len(faces)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["inputs"] == 40
    # only unfinished shards were redone (a Ray worker outside the killed process group may
    # still have finished one in between; its part then counts as done)
    assert summary["shards_this_run"] <= 20 - len(finished)


def test_the_job_s_own_crops_are_never_inputs(astronaut, tmp_path, python_exe):
    """--out inside an input folder: a second run sees the same inputs (the crops of the
    first are not read back), so it continues the job instead of refusing it."""
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), cv2.resize(astronaut, (256, 256)))
    for _ in range(2):
        res = align(python_exe, folder, "--out", folder / "aligned", "--backend", "opencv")
        assert res.returncode == 0, res.stderr[-1500:]
    summary = json.loads((folder / "aligned" / "summary.json").read_text())
    assert summary["inputs"] == 1 and summary["shards_this_run"] == 0
