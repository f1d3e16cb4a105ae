"""Bad and unusual inputs to the API: each gives a clear answer, never a crash or a hang."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.caffe


@pytest.fixture(scope="module")
def detector(model_dir):
    from tcdcn.api import Detector
    return Detector(model_dir)


@pytest.fixture(scope="module")
def astronaut():
    import skimage.data
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def png_header_only(path, width, height):
    """A PNG whose header claims width x height, with a tiny (truncated) body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


def test_empty_file(detector, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg: empty file"):
        detector(tmp_path / "empty.jpg")


def test_non_image_file(detector, tmp_path):
    (tmp_path / "notes.png").write_text("this is text")
    with pytest.raises(ValueError, match="notes.png: not an image"):
        detector(tmp_path / "notes.png")


def test_huge_image_refused_before_decoding(detector, tmp_path):
    png_header_only(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ValueError, match=r"huge.png: 20000x20000 is 400 MP, over the 100 MP limit"):
        detector(tmp_path / "huge.png")


@pytest.mark.slow
def test_large_image_is_searched_downscaled(detector, astronaut):
    big = cv2.resize(astronaut, None, fx=10, fy=10, interpolation=cv2.INTER_NEAREST)  # 5120 px
    small = max(detector(astronaut), key=lambda f: f.score)
    big_faces = detector(big)
    best = max(big_faces, key=lambda f: f.score)     # searched at 2048 px, boxes scaled back
    np.testing.assert_allclose(best.box / 10, small.box, atol=6)
    assert best.landmarks.max() > 1000, "landmarks are in the big image's pixels"


@pytest.mark.parametrize("kind", ["grey", "rgba", "png16", "cmyk"])
def test_image_kinds(detector, astronaut, tmp_path, kind):
    ref = detector(astronaut)
    assert len(ref) >= 1
    if kind == "grey":
        path = tmp_path / "g.png"
        cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY))
    elif kind == "rgba":
        path = tmp_path / "a.png"
        cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA))
    elif kind == "png16":
        path = tmp_path / "w.png"
        cv2.imwrite(str(path), astronaut.astype(np.uint16) * 257)
    else:
        from PIL import Image
        path = tmp_path / "c.jpg"
        Image.fromarray(astronaut[:, :, ::-1]).convert("CMYK").save(path, quality=95)
    faces = detector(path)
    assert len(faces) == len(ref)
    np.testing.assert_allclose(faces[0].box, ref[0].box, atol=6)


def test_no_face_gives_empty_list(detector):
    assert detector(np.zeros((64, 64), np.uint8)) == []
    assert detector.batch([np.zeros((64, 64), np.uint8)] * 3) == [[], [], []]


def test_fifty_faces(detector, astronaut):
    face = astronaut[30:210, 150:300]
    rows = [np.hstack([face] * 10) for _ in range(5)]
    mosaic = np.vstack(rows)
    faces = detector(mosaic)
    assert 45 <= len(faces) <= 55, len(faces)
    one = detector.batch([mosaic])[0]
    assert len(one) == len(faces)
    for a, b in zip(sorted(faces, key=lambda f: tuple(f.box)), sorted(one, key=lambda f: tuple(f.box))):
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
