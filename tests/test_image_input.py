"""Image decoding shared by the API, evaluation and the LMDB writer: truncated files are
errors, EXIF orientation is applied, PIL images are RGB, empty arrays are refused."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from tcdcn.image import load_image


@pytest.fixture
def photo():
    import skimage.data
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def test_truncated_jpeg_and_png_are_errors(photo, tmp_path):
    ok, jpg = cv2.imencode(".jpg", photo)
    (tmp_path / "whole.jpg").write_bytes(jpg.tobytes())
    assert load_image(tmp_path / "whole.jpg").shape == photo.shape
    (tmp_path / "cut.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])
    with pytest.raises(ValueError, match=r"cut.jpg: truncated JPEG"):
        load_image(tmp_path / "cut.jpg")
    ok, png = cv2.imencode(".png", photo)
    (tmp_path / "cut.png").write_bytes(png.tobytes()[:-100])
    with pytest.raises(ValueError, match=r"cut.png: truncated PNG"):
        load_image(tmp_path / "cut.png")


def test_exif_orientation_is_applied(photo, tmp_path):
    from PIL import Image
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 8   # rotate 90 degrees counter-clockwise to display
    im.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    Image.fromarray(rgb).save(tmp_path / "plain.jpg", quality=95)
    shown = load_image(tmp_path / "rotated.jpg")
    plain = load_image(tmp_path / "plain.jpg")
    assert shown.shape[:2] == plain.shape[1::-1][:2] or shown.shape == plain.shape
    np.testing.assert_allclose(shown.astype(float), cv2.rotate(plain, cv2.ROTATE_90_COUNTERCLOCKWISE).astype(float), atol=40)
    assert np.abs(shown.astype(float) - plain.astype(float)).mean() > 10  # really rotated


def test_pil_images_are_taken_as_rgb(photo):
    from PIL import Image
    pil = Image.fromarray(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB))
    np.testing.assert_array_equal(load_image(pil), photo)
    grey = Image.fromarray(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    assert load_image(grey).ndim == 2


def test_empty_arrays_are_refused():
    with pytest.raises(ValueError, match="empty image"):
        load_image(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="empty image"):
        load_image(np.zeros((10, 0), np.uint8))


# ---- bit depths: one rule (image.to_8bit) for paths, arrays and PIL images ----------------

def _face16(photo) -> np.ndarray:
    return cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257


def test_pil_16_bit_and_float_images_match_the_path_loader(photo, tmp_path):
    """PIL's own 8-bit conversion of modes I;16, I and F saturates most pixels: they are
    read as numbers instead, and give the same pixels as the file's path."""
    from PIL import Image
    grey16 = _face16(photo)
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), grey16)
    from_path = load_image(path)
    assert from_path.dtype == np.uint8
    with Image.open(path) as pil:   # mode I;16 or I, as Pillow opens 16-bit PNGs
        assert pil.mode.startswith("I")
        np.testing.assert_array_equal(load_image(pil), from_path)
    as_int32 = Image.fromarray(grey16.astype(np.int32))           # mode I
    np.testing.assert_array_equal(load_image(as_int32), from_path)
    as_float = Image.fromarray(grey16.astype(np.float32) / 65535)  # mode F, 0..1
    assert np.abs(load_image(as_float).astype(int) - from_path).max() <= 1


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_sensor_depths_are_scaled_from_their_own_range(photo, bits):
    """A 10/12/14-bit sensor's values in a uint16 array fill 0..255 as 8-bit ones do,
    not 0..15 (the face stays visible to the detector)."""
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    raw = np.round(grey.astype(np.float64) * (2 ** bits - 1) / 255).astype(np.uint16)
    got = load_image(raw)
    assert np.abs(got.astype(int) - grey).max() <= 1


def test_float_arrays_are_0_to_1_or_0_to_255():
    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    np.testing.assert_array_equal(load_image(ramp), np.round(ramp * 255).astype(np.uint8))
    np.testing.assert_array_equal(load_image(ramp * 255), np.round(ramp * 255).astype(np.uint8))


@pytest.mark.parametrize("bad, words", [
    (np.full((8, 8), np.nan, np.float32), "NaN"),
    (np.full((8, 8), -3, np.int16), "negative"),
    (np.full((8, 8), -0.5, np.float32), "negative"),
    (np.full((8, 8), 2 ** 20, np.int32), "over 16 bits"),
])
def test_values_no_depth_explains_are_errors(bad, words):
    with pytest.raises(ValueError, match=words):
        load_image(bad)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, bool]),
                  st.tuples(st.integers(1, 6), st.integers(1, 6))
                  | st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3, 4]))))
def test_any_array_is_8_bits_or_a_value_error(arr):
    try:
        out = load_image(arr)
    except ValueError:
        return
    assert out.dtype == np.uint8 and out.shape[:2] == arr.shape[:2]
