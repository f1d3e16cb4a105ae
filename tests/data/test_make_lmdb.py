"""tools/make_lmdb.py and the library behind it, on a small synthetic MTFL-style dataset."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

# the LMDB records are caffe Datums (caffe.proto, from our Caffe build)
pytest.importorskip("caffe.proto", reason="pycaffe does not import: run tools/setup.sh")
from tcdcn.data.augment import AugmentConfig
from tcdcn.data.datasets import DataError
from tcdcn.data.lmdb_build import BuildConfig, build
from tcdcn.data.lmdb_io import decode_datum, read_lmdb

from tests.helpers import REPO, run

pytestmark = pytest.mark.caffe   # lmdb_io needs caffe.proto (our Caffe build)

from tests.helpers import N_FACES, face_points

NO_AUGMENT = AugmentConfig(max_angle=0, min_scale=1, max_scale=1, max_shift=0, mirror_p=0,
                           jpeg_p=0, max_brightness=0, max_contrast=0)


def config(dataset: Path, out: Path, **kw) -> BuildConfig:
    base = BuildConfig(dataset="mtfl", root=dataset, out=out, samples=200, val_fraction=0.25,
                       seed=3, workers=2)
    return replace(base, **kw)


def records(path: Path):
    return [decode_datum(v) for _, v in read_lmdb(path)]


def find_dots(img: np.ndarray) -> np.ndarray:
    _, _, _, centroids = cv2.connectedComponentsWithStats((img > 140).astype(np.uint8))
    return centroids[1:]


def test_build_writes_train_val_and_manifest(dataset, tmp_path):
    out = tmp_path / "out"
    manifest = build(config(dataset, out))
    c = manifest["counts"]
    assert (c["train_faces"], c["val_faces"]) == (18, 6)
    assert c["train_records"] == 200 and c["val_records"] == 6
    assert manifest["label_dim"] == 14 and manifest["label_layout"]["pose"] == [13, 14]
    assert set(manifest["sources"]) == {str(dataset / "MTFL" / "training.txt"),
                                        str(dataset / "CNN_FacePoint" / "trainImageList.txt")}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    train = records(out / "train_lmdb")
    assert len(train) == 200
    image, labels, _ = train[0]
    assert image.shape == (1, 40, 40) and image.dtype == np.uint8 and labels.shape == (14,)
    assert all(0 <= v <= 4 for v in labels[10:])
    val_lines = (out / "val_list.txt").read_text().splitlines()
    assert len(val_lines) == 6 and all(len(line.split()) == 15 for line in val_lines)
    assert not list(tmp_path.glob(".out.*")), "no temporary folder is left"
    # the list reproduces the split; its faces are the held-out ones and in no training record
    again = build(config(dataset, tmp_path / "again", val_list=out / "val_list.txt"))
    assert again["counts"]["val_faces"] == 6
    assert (tmp_path / "again" / "val_list.txt").read_text() == (out / "val_list.txt").read_text()


def test_plain_crops_put_dots_at_their_targets(dataset, tmp_path):
    """Through both resamplings (canonical region, then crop) the dots drawn at the
    landmarks are found at the label coordinates."""
    out = tmp_path / "out"
    build(config(dataset, out))
    for image, labels, _ in records(out / "val_lmdb"):
        expected = labels[:10].reshape(5, 2) * 40 - 0.5
        found = find_dots(image[0])
        assert len(found) == 5
        for p in expected:
            assert np.min(np.linalg.norm(found - p, axis=1)) < 0.75


def test_output_is_a_shuffled_permutation_of_the_faces(dataset, tmp_path):
    """Without augmentation and with as many samples as faces, the records are exactly
    the plain crops of the faces, each once, in shuffled order."""
    from tcdcn.data.datasets import load_samples
    from tcdcn.data.lmdb_build import plain_crop, prepare
    out = tmp_path / "out"
    build(config(dataset, out, samples=N_FACES, val_fraction=0.0, augment=NO_AUGMENT))
    train = [labels[:10] for _, labels, _ in records(out / "train_lmdb")]
    samples, _, _ = load_samples("mtfl", dataset)
    plain = [plain_crop(prepare(s, 40, 1), 40)[1].ravel() for s in samples]
    matches = [[i for i, p in enumerate(plain) if np.allclose(p, t, atol=1e-5)] for t in train]
    assert all(len(m) == 1 for m in matches)
    order = [m[0] for m in matches]
    assert sorted(order) == list(range(N_FACES)), "every face exactly once"
    assert order != list(range(N_FACES)), "shuffled"


def test_same_seed_same_output_whatever_the_workers(dataset, tmp_path):
    build(config(dataset, tmp_path / "a", workers=1))
    build(config(dataset, tmp_path / "b", workers=2))
    build(config(dataset, tmp_path / "c", workers=2, seed=4))
    a, b, c = (list(read_lmdb(tmp_path / x / "train_lmdb")) for x in "abc")
    assert a == b
    assert a != c


def test_augmented_landmarks_stay_in_the_crop(dataset, tmp_path):
    out = tmp_path / "out"
    manifest = build(config(dataset, out, samples=400))
    margin = manifest["augmentation"]["keep_margin"]
    pts = np.array([labels[:10] for _, labels, _ in records(out / "train_lmdb")])
    assert pts.min() >= -margin and pts.max() <= 1 + margin


def test_mirrored_records_swap_points_and_poses(dataset, tmp_path):
    """Every face once, always mirrored: the labels' left eye and left mouth corner are
    still the leftmost of their pairs in the crop (the swap happened), and the pose counts
    swap left <-> right profile and left <-> right."""
    from tcdcn.schemes import POSE_FLIP
    out = tmp_path / "out"
    manifest = build(config(dataset, out, samples=18, val_fraction=0.25,
                            augment=replace(NO_AUGMENT, mirror_p=1.0)))
    n = manifest["counts"]["train_faces"]
    assert n == 18
    recs = records(out / "train_lmdb")
    for image, labels, _ in recs:
        pts = labels[:10].reshape(5, 2)
        assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0], pts
        dots = find_dots(image[0])    # the pixels agree with the points, point by point
        for x, y in pts * 40 - 0.5:
            assert np.min(np.hypot(dots[:, 0] - x, dots[:, 1] - y)) < 1.0
    # each record is one training face mirrored: find it by its points, check its pose
    from tcdcn.data.datasets import load_samples, split_by_group
    from tcdcn.data.lmdb_build import plain_crop, prepare
    from tcdcn.schemes import FIVE_POINT
    samples, _, _ = load_samples("mtfl", dataset)
    train, _ = split_by_group(samples, 0.25, 3)
    expected = []
    for face in train:
        t = plain_crop(prepare(face, 40, 1), 40)[1].copy()
        t[:, 0] = 1.0 - t[:, 0]
        expected.append((t[FIVE_POINT.flip_permutation()], int(face.attributes[3])))
    changed = 0
    for _, labels, _ in recs:
        pts = labels[:10].reshape(5, 2)
        pose = min(expected, key=lambda e: np.abs(e[0] - pts).max())
        assert np.abs(pose[0] - pts).max() < 1e-4
        assert int(labels[13]) == POSE_FLIP[pose[1]]
        changed += POSE_FLIP[pose[1]] != pose[1]
    assert changed > 0, "the fixture must have non-frontal faces"


# -- bad input ------------------------------------------------------------------------------

def list_lines(dataset: Path) -> list[str]:
    with open(dataset / "MTFL" / "training.txt", newline="") as f:
        return f.read().splitlines(keepends=True)


def break_line(dataset: Path, index: int, new: str | None = None, image_bytes: bytes | None = None):
    lines = list_lines(dataset)
    if new is not None:
        lines[index] = new
    (dataset / "MTFL" / "training.txt").write_text("".join(lines), newline="")
    if image_bytes is not None:
        rel = lines[index].split()[0].replace("\\", "/")
        (dataset / "MTFL" / rel).write_bytes(image_bytes)


@pytest.mark.parametrize("case,message", [
    ("missing", r"training.txt:3: image .* not found"),
    ("corrupt", r"training.txt:3: image .* cannot be decoded"),
    ("malformed", r"training.txt:3: expected 15 fields"),
    ("label", r"training.txt:3: smile label 7 out of range"),
    ("far", r"training.txt:3: point 1 \(900.0, [0-9.]+\) is far outside the 110x100 image"),
])
def test_bad_input_names_file_and_line_and_leaves_nothing(dataset, tmp_path, case, message):
    line = list_lines(dataset)[2]
    fields = line.split()
    if case == "missing":
        (dataset / "MTFL" / fields[0].replace("\\", "/")).unlink()
    elif case == "corrupt":
        break_line(dataset, 2, image_bytes=b"not a jpeg at all")
    elif case == "malformed":
        break_line(dataset, 2, " " + " ".join(fields[:-1]) + "\r\n")
    elif case == "label":
        fields[12] = "7"
        break_line(dataset, 2, " " + " ".join(fields) + "\r\n")
    elif case == "far":
        fields[1] = "901"
        break_line(dataset, 2, " " + " ".join(fields) + "\r\n")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=message):
        build(config(dataset, out, val_fraction=0.0))
    assert not out.exists()
    # --skip-bad: counted and listed instead
    manifest = build(config(dataset, out, val_fraction=0.0, skip_bad=True))
    assert manifest["skipped"]["count"] == 1
    assert "training.txt:3" in manifest["skipped"]["items"][0]
    assert manifest["counts"]["train_faces"] == N_FACES - 1


def test_interrupted_run_leaves_nothing(dataset, tmp_path):
    class Interrupt:
        def __init__(self, total):
            self.seen = 0

        def update(self, n):
            self.seen += n
            if self.seen > 100:
                raise KeyboardInterrupt

        def close(self):
            pass

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build(config(dataset, out, samples=3000), progress=Interrupt)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"], "no temporary folder is left"


def test_existing_output_is_not_overwritten(dataset, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        build(config(dataset, tmp_path / "out"))


# -- the tool, and the records through the MultiLabelData layer ---------------------------

def test_tool_end_to_end_with_preview(dataset, tmp_path, python_exe):
    out = tmp_path / "out"
    res = run([python_exe, REPO / "tools" / "make_lmdb.py", "--dataset", "mtfl", "--root", dataset,
               "--out", out, "--samples", "300", "--preview", "8", "--workers", "2"])
    assert res.returncode == 0, res.stderr
    assert "300 records" in res.stdout and "samples/s" in res.stdout
    assert cv2.imread(str(out / "preview.png")) is not None
    manifest = json.loads((out / "manifest.json").read_text())
    assert "make_lmdb.py" in manifest["command"] and "--samples 300" in manifest["command"]
    break_line(dataset, 5, " bad line\r\n")
    res = run([python_exe, REPO / "tools" / "make_lmdb.py", "--dataset", "mtfl", "--root", dataset,
               "--out", tmp_path / "out2", "--samples", "10"])
    assert res.returncode == 1
    assert "training.txt:6: expected 15 fields" in res.stderr
    assert not (tmp_path / "out2").exists()


@pytest.mark.caffe
def test_records_read_back_through_multilabel_data_layer(dataset, tmp_path, caffe):
    out = tmp_path / "out"
    build(config(dataset, out, samples=50))
    written = records(out / "train_lmdb")
    (tmp_path / "net.prototxt").write_text(f"""
layer {{ name: "d" type: "MultiLabelData" top: "data" top: "label"
  multilabel_data_param {{ source: "{out / 'train_lmdb'}" batch_size: 10 label_dim: 14 }} }}
""")
    net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TRAIN)
    for batch in range(5):
        net.forward()
        for item in range(10):
            image, labels, _ = written[batch * 10 + item]
            np.testing.assert_array_equal(net.blobs["data"].data[item], image)
            np.testing.assert_allclose(net.blobs["label"].data[item], labels, rtol=0, atol=0)


from tests.helpers import SHARED_DATA as SHARED  # noqa: E402


@pytest.mark.skipif(not (SHARED / "300W" / "afw").is_dir(), reason="300-W data not present")
def test_300w_folder_with_validation_split_and_a_bad_pts(tmp_path, python_exe):
    import shutil
    src = sorted((SHARED / "300W" / "afw").glob("*.pts"))[:8]
    root = tmp_path / "faces"
    root.mkdir()
    for pts in src:
        shutil.copy(pts, root / pts.name)
        shutil.copy(pts.with_suffix(".jpg"), root / pts.with_suffix(".jpg").name)
    bad = root / src[0].name
    lines = bad.read_text().splitlines()
    body = [l for l in lines if l.strip() and l[0].isdigit()]
    bad.write_text("version: 1\nn_points: 67\n{\n" + "\n".join(body[:67]) + "\n}\n")
    args = [python_exe, REPO / "tools" / "make_lmdb.py", "--dataset", "300w", "--root", root,
            "--samples", "40", "--val-fraction", "0.25", "--workers", "1"]
    res = run(args + ["--out", tmp_path / "strict"])
    assert res.returncode == 1 and f"{bad}: 67 points, expected 68" in res.stderr, res.stderr
    assert not (tmp_path / "strict").exists()
    res = run(args + ["--out", tmp_path / "out", "--skip-bad"])
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["skipped"]["count"] == 1 and str(bad) in manifest["skipped"]["items"][0]
    assert manifest["counts"]["val_faces"] >= 1 and manifest["counts"]["train_records"] == 40
    # the validation images, named relative to the data root, read back as evaluate.py does
    val_lines = (tmp_path / "out" / "val_list.txt").read_text().split()
    assert val_lines and all(Path(v).suffix == ".jpg" and (root / v).is_file() for v in val_lines)
    from tcdcn.data.datasets import load_samples
    again, _, _ = load_samples("300w", root, tmp_path / "out" / "val_list.txt")
    assert sorted(s.image.name for s in again) == sorted(val_lines)
    assert len(again) == manifest["counts"]["val_faces"]


def test_profile_faces_are_drawn_more_often(dataset):
    from tcdcn.data.lmdb_build import Prepared, is_profile, weighted_faces
    poses = [0, 1, 2, 3, 4, 2]
    faces = [Prepared(region=np.zeros((4, 4), np.uint8), points=np.zeros((5, 2)),
                      attributes=np.array([0, 0, 0, p], np.float32),
                      centre=np.zeros(2), side=1.0) for p in poses]
    assert [is_profile(f) for f in faces] == [True, False, False, False, True, False]
    pool = weighted_faces(faces, 3)
    assert len(pool) == 6 + 2 * 2
    assert sum(f is faces[0] for f in pool) == 3 and sum(f is faces[2] for f in pool) == 1
    assert weighted_faces(faces, 1) == faces
    with pytest.raises(ValueError):
        weighted_faces(faces, 0)


@pytest.mark.parametrize("flags, message", [
    (["--samples", "0"], "--samples must be at least 1"),
    (["--samples", "-5"], "--samples must be at least 1"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--size", "0"], "--size must be at least 8"),
    (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
])
def test_bad_numbers_are_refused_before_any_work(dataset, tmp_path, python_exe, flags, message):
    args = [python_exe, REPO / "tools" / "make_lmdb.py", "--dataset", "mtfl", "--root", dataset,
            "--out", tmp_path / "out", "--samples", "10"] + flags
    res = run(args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder_is_refused_first(dataset, tmp_path, python_exe):
    # a path under a file cannot be written by anyone, root included (CI runs as root)
    (tmp_path / "file").write_text("x")
    res = run([python_exe, REPO / "tools" / "make_lmdb.py", "--dataset", "mtfl", "--root",
               dataset, "--out", tmp_path / "file" / "out", "--samples", "10"])
    assert res.returncode == 2 and "cannot write in" in res.stderr, res.stderr


def test_sigterm_cleans_up_without_tracebacks(dataset, tmp_path, python_exe):
    import signal
    import subprocess
    import time
    out = tmp_path / "big"
    proc = subprocess.Popen([str(python_exe), str(REPO / "tools" / "make_lmdb.py"), "--dataset",
                             "mtfl", "--root", str(dataset), "--out", str(out),
                             "--samples", "5000000", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".big.*/.train_lmdb.*")):   # training records being written
        assert time.time() < deadline and proc.poll() is None, "the build did not start"
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-2000:]
    assert "nothing was written" in err
    assert not out.exists() and not list(tmp_path.glob(".big.*"))


def test_stale_temporaries_of_a_killed_build_are_removed(dataset, tmp_path):
    import subprocess

    from tcdcn.data.lmdb_build import OWNER
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / ".out.abc123"
    (stale / "train_lmdb").mkdir(parents=True)
    (stale / OWNER).write_text(str(dead.pid))
    alive = tmp_path / ".out.live99"
    alive.mkdir()
    (alive / OWNER).write_text(str(__import__("os").getpid()))   # a running writer: kept
    manifest = build(config(dataset, tmp_path / "out", samples=50))
    assert manifest["removed_stale_temporaries"] == [str(stale)]
    assert not stale.exists() and alive.exists()
    assert not (tmp_path / "out" / OWNER).exists()


# -- 300-W faces added to 5-point training ----------------------------------------------------

def write_300w_faces(folder: Path, n: int, rng) -> list[np.ndarray]:
    """n synthetic 300-W faces: 68 points (1-based in the .pts) whose five derived points
    (eye centres, nose tip 30, mouth corners 48 and 54) are drawn as dots; returns those
    five points (0-based) per face."""
    folder.mkdir(parents=True)
    derived = []
    for i in range(n):
        five = face_points(rng) + rng.uniform(-5, 5, size=2)
        pts = np.tile(five[2], (68, 1)) + rng.uniform(-0.5, 0.5, size=(68, 2))
        for eye, idx in ((0, range(36, 42)), (1, range(42, 48))):   # six points about the centre
            ring = np.array([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, 7)[:6]])
            pts[list(idx)] = five[eye] + 2.0 * ring
        pts[30], pts[48], pts[54] = five[2], five[3], five[4]
        img = np.full((100, 110), 40, np.uint8)
        for x, y in five:
            cv2.circle(img, (int(round(x)), int(round(y))), 2, 250, -1)
        cv2.imwrite(str(folder / f"face{i}_1.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
        body = "\n".join(f"{x + 1:.4f} {y + 1:.4f}" for x, y in pts)
        (folder / f"face{i}_1.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
        derived.append(five)
    return derived


def test_added_300w_faces_train_with_derived_points_and_no_attributes(dataset, tmp_path):
    from tcdcn.schemes import UNLABELLED
    write_300w_faces(tmp_path / "300W", 6, np.random.default_rng(5))
    out = tmp_path / "out"
    # more samples than faces in the pool, so that every face is drawn
    manifest = build(config(dataset, out, samples=200, augment=NO_AUGMENT,
                            extra_300w=tmp_path))
    assert manifest["extra_300w"]["faces"] == 6
    from tcdcn.data.datasets import load_samples, split_by_group
    train, _ = split_by_group(load_samples("mtfl", dataset)[0], 0.25, 3)
    assert manifest["counts"]["train_faces"] == len(train) + 6
    recs = records(out / "train_lmdb")
    added = [(img, lab) for img, lab, _ in recs if lab[10] == UNLABELLED]
    labelled = [lab for _, lab, _ in recs if lab[10] != UNLABELLED]
    assert added and labelled
    assert all((lab[10:] == UNLABELLED).all() for _, lab in added), "all four unlabelled"
    assert all((lab[10:] >= 0).all() for lab in labelled)
    for image, labels in added:   # the derived points sit on the dots drawn there
        found = find_dots(image[0])
        assert len(found) == 5
        for p in labels[:10].reshape(5, 2) * 40 - 0.5:   # dots drawn at rounded pixels
            assert np.min(np.linalg.norm(found - p, axis=1)) < 1.0
    # validation stays on the main dataset's faces
    assert all((lab[10:] >= 0).all() for _, lab, _ in records(out / "val_lmdb"))


def test_unlabelled_pose_is_not_a_profile_and_survives_mirroring():
    from tcdcn.data.augment import mirror_labels
    from tcdcn.data.lmdb_build import Prepared, is_profile
    from tcdcn.schemes import FIVE_POINT, UNLABELLED
    attrs = np.full(4, UNLABELLED, np.int64)
    face = Prepared(region=np.zeros((4, 4), np.uint8), points=np.zeros((5, 2)),
                    attributes=attrs, centre=np.zeros(2), side=1.0)
    assert not is_profile(face)
    _, mirrored = mirror_labels(np.zeros((5, 2)), attrs, FIVE_POINT)
    assert (mirrored == UNLABELLED).all()
    _, mirrored = mirror_labels(np.zeros((5, 2)), np.array([0, 1, 0, 0]), FIVE_POINT)
    assert mirrored[3] == 4


def test_add_300w_refuses_a_folder_without_faces(dataset, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no 300-W faces"):
        build(config(dataset, tmp_path / "out", extra_300w=tmp_path / "empty"))
    assert not (tmp_path / "out").exists()


def test_augmentation_spread_scales_the_ranges_about_their_centres():
    base = AugmentConfig()
    assert base.spread(1.0) == base
    half = base.spread(0.5)
    assert half.max_angle == base.max_angle / 2 and half.max_shift == base.max_shift / 2
    assert half.min_scale + half.max_scale == pytest.approx(base.min_scale + base.max_scale)
    assert half.max_scale - half.min_scale == pytest.approx((base.max_scale - base.min_scale) / 2)
    assert half.jpeg_p == base.jpeg_p and half.mirror_p == base.mirror_p
    with pytest.raises(ValueError):
        base.spread(-1)
