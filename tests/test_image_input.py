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
