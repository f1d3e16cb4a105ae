"""Images in: decoding (EXIF orientation, bit depth, truncation checks) and grey conversion."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

MAX_PIXELS = 100_000_000   # larger images are refused before decoding (memory)


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding it, where Pillow knows the format."""
    try:
        from PIL import Image
        Image.MAX_IMAGE_PIXELS = None   # we check the size ourselves, below
        with Image.open(path) as im:
            return im.size
    except Exception:  # not an image Pillow reads: let OpenCV decide
        return None


def truncation(data: bytes) -> str | None:
    """Why a JPEG or PNG file is cut short (None if it is whole): libjpeg decodes a
    truncated JPEG as partly flat grey, with only a warning."""
    if data[:2] == b"\xff\xd8":
        if b"\xff\xd9" not in data[-64:]:   # the end-of-image marker, trailing junk allowed
            return "truncated JPEG (no end-of-image marker)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-64:]:
            return "truncated PNG (no IEND chunk)"
    return None


def decode_file(path: str | Path) -> np.ndarray:
    """Decode an image file as this project does everywhere (training lists, evaluation,
    the API): EXIF orientation applied, 16-bit and grey kept (alpha dropped); errors name
    the file. Truncated JPEG/PNG files are errors, not partly grey images."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: empty file")
    why = truncation(data)
    if why:
        raise ValueError(f"{path}: {why}")
    size = image_size(path)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"{path}: {size[0]}x{size[1]} is {size[0] * size[1] / 1e6:.0f} MP, "
                         f"over the {MAX_PIXELS / 1e6:.0f} MP limit; downscale it first")
    # ANYDEPTH|ANYCOLOR, not UNCHANGED: OpenCV applies the EXIF orientation only then
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can decode")
    return image


def load_image(image) -> np.ndarray:
    """A path, a BGR / BGRA / grey array (8 or 16 bit) or a PIL image, as an 8-bit array.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for an
    empty, truncated, undecodable or oversized one (over MAX_PIXELS pixels)."""
    if isinstance(image, (str, Path)):
        image = decode_file(image)
    elif type(image).__module__.startswith("PIL."):
        # PIL images are RGB(A) or grey: convert to OpenCV's BGR order
        mode = image.mode
        if mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGB")
            mode = "RGB"
        arr = np.asarray(image)
        image = {"L": lambda a: a, "RGB": lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2BGR),
                 "RGBA": lambda a: cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA)}[mode](arr)
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image / 257).astype(np.uint8)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an 8-bit grey or colour image, got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image ({image.shape[1]}x{image.shape[0]} pixels)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image


def to_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


# Image files the tools read: the CLI's inputs, the images beside 300-W's .pts files
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
