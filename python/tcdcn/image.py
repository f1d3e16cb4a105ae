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


BIT_DEPTHS = (8, 10, 12, 14, 16)   # sensors' depths: integers are read as the smallest that fits


def to_8bit(image: np.ndarray) -> np.ndarray:
    """An array of any pixel type as 8 bits, by one rule for paths, arrays and PIL images:
    integers wider than 8 bits are scaled from the smallest of 10, 12, 14 or 16 bits that
    holds their largest value (a 12-bit sensor's 0..4095 becomes 0..255; a 16-bit PNG that
    uses its range is divided by 257); floats are 0..1 (values above 1.0 mean 0..255),
    clipped. Negative, NaN or infinite values are errors."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.integer):
        low, high = (int(image.min()), int(image.max())) if image.size else (0, 0)
        if low < 0:
            raise ValueError(f"{image.dtype} image with negative values (down to {low})")
        depth = next((d for d in BIT_DEPTHS if high < 2 ** d), None)
        if depth is None:
            raise ValueError(f"{image.dtype} image with values up to {high}: over 16 bits")
        if depth == 8:
            return image.astype(np.uint8)
        return np.round(image.astype(np.float64) * (255.0 / (2 ** depth - 1))).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError(f"{image.dtype} image with NaN or infinite values")
        if image.size and image.min() < 0:
            raise ValueError(f"{image.dtype} image with negative values: floats are 0..1 "
                             "(or 0..255)")
        scale = 255.0 if not image.size or image.max() <= 1.0 else 1.0
        return np.round(np.clip(image * scale, 0, 255)).astype(np.uint8)
    raise ValueError(f"expected an image of numbers, got {image.dtype}")


def from_pil(image) -> np.ndarray:
    """A PIL image as OpenCV's arrays (BGR order), its bit depth kept for to_8bit: modes I,
    I;16 and F are read as numbers, not through PIL's 8-bit conversion, which saturates."""
    mode = image.mode
    if mode == "F":
        return np.asarray(image, dtype=np.float32)
    if mode.startswith("I"):        # I (32-bit) and I;16 (16-bit) grey
        return np.asarray(image).astype(np.int64)
    if mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
        mode = image.mode
    arr = np.asarray(image)
    return {"L": lambda a: a, "RGB": lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2BGR),
            "RGBA": lambda a: cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA)}[mode](arr)


def load_image(image) -> np.ndarray:
    """A path, a BGR / BGRA / grey array or a PIL image, as an 8-bit array (bit depths by
    to_8bit's rule: 10- to 16-bit integers scaled from their depth, floats 0..1).

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for an
    empty, truncated, undecodable or oversized one (over MAX_PIXELS pixels)."""
    name = None
    if isinstance(image, (str, Path)):
        name = image
        image = decode_file(image)
    elif type(image).__module__.startswith("PIL."):
        image = from_pil(image)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected a grey or colour image (H x W, or H x W x 1, 3 or 4), "
                         f"got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image ({image.shape[1]}x{image.shape[0]} pixels)")
    try:
        image = to_8bit(image)
    except ValueError as err:
        raise ValueError(f"{name}: {err}" if name else str(err)) from None
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
# Video files the tools read frame by frame (OpenCV's VideoCapture)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
