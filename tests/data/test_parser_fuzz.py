"""Property-based fuzzing of the list and .pts parsers: random bytes and mutated valid
lines give a DataError naming the file and line, or valid samples; never another
exception."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcdcn.data.datasets import DataError, read_facepoint, read_mtfl, read_pts

VALID_MTFL = (" lfw_5590\\Aaron_0001.jpg 107.25 147.75 126.25 106.25 140.75 108.75 "
              "113.25 128.75 154.25 153.75 1 2 2 3\r\n")
VALID_FACEPOINT = ("lfw_5590\\Aaron_0001.jpg 84 161 92 169 106.25 107.75 146.75 112.25 "
                   "125.25 127.75 105.25 153.25 139.75 152.75\r\n")
VALID_PTS = "version: 1\nn_points: 3\n{\n10 20\n30.5 40\n50 60\n}\n"

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutate(text: str, data) -> bytes:
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and raw:
            del raw[i:i + data.draw(st.integers(1, 12))]
        elif op == "dup":
            raw.extend(bytes(raw))
    return bytes(raw)


def check(parse, path, content: bytes):
    path.write_bytes(content)
    try:
        samples = parse(path)
    except DataError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
        return
    if isinstance(samples, list):
        for s in samples:
            assert s.landmarks.ndim == 2 and s.landmarks.shape[1] == 2
    else:
        assert samples.ndim == 2 and samples.shape[1] == 2


@SETTINGS
@given(data=st.data())
def test_mtfl_lines(tmp_path, data):
    content = (mutate(VALID_MTFL, data) if data.draw(st.booleans())
               else data.draw(st.binary(max_size=300)))
    check(lambda p: read_mtfl(p, tmp_path, check_images=False), tmp_path / "list.txt", content)


@SETTINGS
@given(data=st.data())
def test_facepoint_lines(tmp_path, data):
    content = (mutate(VALID_FACEPOINT, data) if data.draw(st.booleans())
               else data.draw(st.binary(max_size=300)))
    check(lambda p: read_facepoint(p, tmp_path, check_images=False), tmp_path / "list.txt",
          content)


@SETTINGS
@given(data=st.data())
def test_pts_files(tmp_path, data):
    content = (mutate(VALID_PTS, data) if data.draw(st.booleans())
               else data.draw(st.binary(max_size=200)))
    check(read_pts, tmp_path / "face.pts", content)


def test_the_valid_lines_parse(tmp_path):
    (tmp_path / "m.txt").write_text(VALID_MTFL, newline="")
    assert len(read_mtfl(tmp_path / "m.txt", tmp_path, check_images=False)) == 1
    (tmp_path / "f.txt").write_text(VALID_FACEPOINT, newline="")
    assert len(read_facepoint(tmp_path / "f.txt", tmp_path, check_images=False)) == 1
    (tmp_path / "a.pts").write_text(VALID_PTS)
    assert read_pts(tmp_path / "a.pts").shape == (3, 2)


def test_non_finite_numbers_are_refused(tmp_path):
    import pytest
    (tmp_path / "m.txt").write_text(VALID_MTFL.replace("107.25", "nan"), newline="")
    with pytest.raises(DataError, match=r"m.txt:1: non-finite"):
        read_mtfl(tmp_path / "m.txt", tmp_path, check_images=False)
    (tmp_path / "a.pts").write_text(VALID_PTS.replace("30.5", "inf"))
    with pytest.raises(DataError, match=r"a.pts:5: non-finite"):
        read_pts(tmp_path / "a.pts")
