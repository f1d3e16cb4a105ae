"""The Python API: find faces in an image and return their landmarks and attributes.

    from tcdcn.api import Detector
    faces = Detector()("photo.jpg")          # list of Face (empty when there is none)
    for f in faces: print(f.box, f.landmarks, f.attributes)
    Detector("tcdcn_68pt")("photo.jpg")      # 68 points; f.five_points works with either
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tcdcn.inference import Face, LandmarkModel, to_grey

def _bundled_model(name: str = "tcdcn_5pt") -> Path:
    """A model shipped inside the package (tcdcn/models/NAME), found through
    importlib.resources so that it works from a checkout and from an installed wheel."""
    from importlib.resources import files
    return Path(str(files("tcdcn.models") / name))


DEFAULT_MODEL = _bundled_model()


def resolve_model(model: str | Path) -> Path:
    """A model folder, or the name of a bundled one ("tcdcn_5pt", "tcdcn_68pt")."""
    path = Path(model)
    if not path.exists() and len(path.parts) == 1 and _bundled_model(str(path)).is_dir():
        return _bundled_model(str(path))
    return path


MAX_PIXELS = 100_000_000   # larger images are refused before decoding (memory)
MAX_SIDE = 2048            # larger images are searched downscaled (boxes scaled back)


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


class Detector:
    """Face detection (MTCNN by default, the models ship in the package; or OpenCV's Haar
    cascades), crops placed as the model's measurements chose (model.json), then the TCDCN
    model. `backend` ("auto", "caffe", "opencv") is where the landmark model and S-Net run;
    MTCNN's own nets always run in OpenCV dnn."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, batch: int = 64, min_face: int = 20,
                 detector: str = "mtcnn", mtcnn: str | Path | None = None,
                 backend: str = "auto", refine: int | None = None, pad="auto",
                 crop_from: str | None = None, turns="auto", proposals: str = "snet"):
        from tcdcn.evaluation import make_detector
        import numbers
        if not isinstance(min_face, numbers.Integral) or min_face < 12:
            raise ValueError(f"min_face must be a whole number of pixels >= 12 (MTCNN's "
                             f"smallest window), not {min_face!r}")
        min_face = int(min_face)
        self.model = LandmarkModel(resolve_model(model), batch=batch, backend=backend)
        # a border for tight crops, so that faces touching the edges are found: "auto" is
        # detect.DEFAULT_PADS (10%, else 25%, else 50% while no face scored 0.9); 0 for none
        # where the upright image has no confident face, it is searched turned (MTCNN
        # only): "auto" is detect.DEFAULT_TURNS (quarter turns 90, 180, 270 and tilts of 30
        # degrees either way, 30 and 330; the most confident face wins); () for none
        # MTCNN's first stages: "snet" (the single-shot S-Net, models/snet; the classic
        # P-Net + R-Net search only where it finds no face at all) or "pnet" (classic)
        self.detector = make_detector(self.model, detector, mtcnn, pad, crop_from, min_face,
                                      turns, proposals=proposals)
        self.wants_colour = detector == "mtcnn"
        # a second, re-centred pass only where the model's measurements say it helps
        self.refine = refine if refine is not None else int(self.model.meta.get("refine", 0))

    def __repr__(self) -> str:
        return (f"Detector(model={self.model.folder.name!r}, backend={self.model.backend!r}, "
                f"detector={type(self.detector).__name__})")

    def __call__(self, image, boxes=None) -> list[Face]:
        image = load_image(image)
        grey = to_grey(image)
        if boxes is None:
            boxes, scores = self.detect_oriented(image if self.wants_colour else grey)
        else:
            boxes, scores = np.asarray(boxes, dtype=np.float64).reshape(-1, 4), None
        return self.model.predict(grey, boxes, scores, refine=self.refine)

    def detect(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated face boxes in image pixels; large images are searched downscaled."""
        boxes, scores = self.detect_oriented(grey)
        return boxes[:, :4], scores

    def detect_oriented(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """detect()'s boxes with a fifth value: the turn (degrees clockwise) that makes each
        face upright (detect.Turned; 0 for upright faces)."""
        scale = min(1.0, MAX_SIDE / max(image.shape[:2]))
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale,
                                                      interpolation=cv2.INTER_AREA)
        from tcdcn.detect import oriented_boxes
        boxes, scores = oriented_boxes(self.detector, small)
        boxes[:, :4] /= scale
        return boxes, scores

    def batch(self, images: list) -> list[list[Face]]:
        """All faces of many images through the net together (in batches of the model's
        batch size). Same results as calling the detector on each image."""
        loaded = [load_image(im) for im in images]
        if self.refine:   # the second pass is per image
            return [self(im) for im in loaded]
        greys = [to_grey(im) for im in loaded]
        found = [self.detect_oriented(im if self.wants_colour else g)
                 for im, g in zip(loaded, greys)]
        crops, mats, owner = [], [], []
        for i, (g, (boxes, _)) in enumerate(zip(greys, found)):
            c, m = self.model.crops(g, boxes)
            crops.append(c)
            mats += m
            owner += [i] * len(boxes)
        results: list[list[Face]] = [[] for _ in images]
        if not owner:
            return results
        out = self.model.forward(np.concatenate(crops))
        faces = self.model.faces_from_outputs(out, np.concatenate([b for b, _ in found]),
                                              mats, np.concatenate([s for _, s in found]))
        for i, face in zip(owner, faces):
            results[i].append(face)
        return results


def draw(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of the image with boxes, points and attribute labels drawn."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale = max(1, round(max(out.shape[:2]) / 400))
    for f in faces:
        l, t, r, b = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (l, t), (r, b), (255, 200, 0), scale)
        if f.scheme == "68pt":   # contours of jaw, brows, nose, eyes and lips
            from tcdcn.schemes import IBUG68_CONTOURS
            for idx, closed in IBUG68_CONTOURS:
                pts = np.round(f.landmarks[list(idx)]).astype(np.int32)
                cv2.polylines(out, [pts], closed, (0, 255, 0), max(1, scale // 2), cv2.LINE_AA)
        radius = scale if f.scheme == "68pt" else 2 * scale
        for x, y in f.landmarks:
            cv2.circle(out, (int(round(x)), int(round(y))), radius, (0, 0, 255), -1)
        lines = [f"{k}: {v[0]} {v[1]:.2f}" for k, v in f.attributes.items()]
        for i, text in enumerate(lines):
            cv2.putText(out, text, (l, b + (14 * (i + 1)) * scale), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * scale, (255, 255, 0), max(1, scale // 2))
    return out
