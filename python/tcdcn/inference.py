"""Running a trained TCDCN model: face box -> 40x40 crop -> landmarks and attributes.

A model folder holds deploy.prototxt, a .caffemodel and model.json (the self-description:
input size, normalisation, scheme, attribute names, detector calibration, numbers).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tcdcn.augment import apply_matrix, compose, denormalise, face_crop, invert_matrix
from tcdcn.schemes import POSE_FLIP, SCHEMES, TASKS


@dataclass
class Face:
    box: np.ndarray                    # left, top, right, bottom (image pixels)
    score: float                       # detector score (1.0 for given boxes)
    landmarks: np.ndarray              # K x 2, image pixels
    attributes: dict = field(default_factory=dict)  # task -> (label, probability)
    scheme: str = "5pt"                # the landmark scheme (schemes.SCHEMES)
    track_id: int | None = None        # video tracking (tracking.Tracker): one id per face
    turn: int = 0                      # turn (degrees clockwise: a quarter turn or a tilt)
                                       # that made the face upright for the net
                                       # (detect.Turned); 0: upright

    @property
    def pose(self) -> str | None:
        return self.attributes.get("pose", (None, None))[0]

    @property
    def five_points(self) -> np.ndarray:
        """Eye centres, nose tip, mouth corners (the 5-point scheme's order), for any
        scheme: a 68-point face's are derived (eye centres = means of each eye's six
        points), so code written for the 5-point model works with either."""
        from tcdcn.boxes import five_points
        return five_points(self.landmarks)

    def as_dict(self) -> dict:
        def rounded(points):
            return [[round(float(x), 2), round(float(y), 2)] for x, y in points]
        out = {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4),
               "scheme": self.scheme, "landmarks": rounded(self.landmarks),
               "attributes": {k: {"label": v[0], "probability": round(v[1], 4)}
                              for k, v in self.attributes.items()}}
        if self.scheme != "5pt":
            out["five_points"] = rounded(self.five_points)
        if self.track_id is not None:
            out["track_id"] = self.track_id
        if self.turn:
            out["turn"] = self.turn
        return out


def to_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


BACKENDS = ("caffe", "opencv")


def default_backend() -> str:
    """"caffe" where this project's pycaffe imports (tools/setup.sh), else "opencv"."""
    try:
        import caffe  # noqa: F401
        from caffe import layer_type_list
        return "caffe" if "LocallyConnected" in layer_type_list() else "opencv"
    except Exception:   # no pycaffe, or another Caffe without our layers
        return "opencv"


def check_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")


def read_model_json(folder: Path) -> dict:
    """A model folder's self-description, with errors that name the file."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    path = folder / "model.json"
    check_file(path)
    try:
        meta = json.loads(path.read_text())
        for key in ("input", "landmark_scheme", "files"):
            meta[key]
        int(meta["input"]["size"])
        meta["files"]["deploy"], meta["files"]["weights"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a model description ({type(err).__name__}: {err})") \
            from None
    if meta["landmark_scheme"] not in SCHEMES:
        raise ValueError(f"{path}: unknown landmark scheme {meta['landmark_scheme']!r}")
    return meta


def load_caffe_net(deploy: Path, weights: Path):
    """pycaffe's Net with its weights, checked first: a truncated, empty or foreign
    caffemodel is an error naming the file and the layer, not a glog abort (or, for an
    empty file, a net silently left at its random initialisation)."""
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError
    check_file(deploy)
    check_file(weights)
    caffe.set_mode_cpu()
    try:
        net = caffe.Net(str(deploy), caffe.TEST)
    except Exception as err:   # pycaffe raises a bare RuntimeError/SystemError here
        raise ValueError(f"{deploy}: Caffe cannot read this net ({err})") from None
    proto = caffe_pb2.NetParameter()
    try:
        proto.ParseFromString(weights.read_bytes())
    except DecodeError:
        raise ValueError(f"{weights}: not a caffemodel (truncated or corrupt)") from None
    stored = {l.name: [tuple(b.shape.dim) if b.HasField("shape") else
                       tuple(d for d in (b.num, b.channels, b.height, b.width))
                       for b in l.blobs] for l in proto.layer}
    for name, params in net.params.items():
        if name not in stored or not stored[name]:
            raise ValueError(f"{weights}: has no weights for layer {name!r} of {deploy}")
        want = [tuple(p.data.shape) for p in params]
        have = [tuple(int(d) for d in shape) for shape in stored[name]]
        # legacy 4-D blobs (1, 1, out, in) hold the same weights as (out, in): compare sizes,
        # and shapes where the ranks agree
        if len(have) != len(want) or any(np.prod(h) != np.prod(w) or (len(h) == len(w) and h != w)
                                         for h, w in zip(have, want)):
            raise ValueError(f"{weights}: layer {name!r} has weights of shapes {have}, "
                             f"{deploy} needs {want}")
    net.copy_from(str(weights))
    return net



def box_for_points(points: np.ndarray, turn: int, shape) -> np.ndarray:
    """The box (5 values: with its turn) of a face's points by the box rule of boxes.py,
    which holds for upright faces: for a face found turned (Face.turn), the rule is applied
    in the turned image and the box mapped back."""
    from tcdcn.boxes import box_from_landmarks
    from tcdcn.detect import turn_matrix, turned_back
    upright = box_from_landmarks(apply_matrix(turn_matrix(turn, shape), points))
    return np.append(turned_back(upright, turn, shape)[0], turn)


class LandmarkModel:
    """A trained model, run on boxes in batches.

    backend "caffe": pycaffe with this project's build (deploy.prototxt + weights);
    backend "opencv": stock OpenCV dnn with the export of tools/export_opencv.py (no
    LocallyConnected layer, so no Caffe build is needed); "auto" (the default): "caffe"
    where it imports, else "opencv".
    """

    def __init__(self, folder: str | Path, batch: int = 64, backend: str = "auto"):
        if backend == "auto":
            backend = default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, not {backend!r}")
        self.folder = Path(folder)
        self.meta = read_model_json(self.folder)
        self.size = int(self.meta["input"]["size"])
        # the crop's side in box sides (chosen on validation; 1: the box itself)
        self.crop_scale = float(self.meta["input"].get("crop_scale", 1.0))
        # test-time flip averaging: also predict on the mirrored crop, unmirror, average
        self.flip = bool(self.meta.get("test_time_flip", False))
        self.scheme = SCHEMES[self.meta["landmark_scheme"]]
        self.tasks = [t for t in TASKS if t.name in self.meta.get("attributes", {})]
        self.backend = backend
        self.batch = batch
        self.outputs = ["landmarks"] + [f"{t.name}_prob" for t in self.tasks]
        if backend == "caffe":
            self.net = load_caffe_net(self.folder / self.meta["files"]["deploy"],
                                      self.folder / self.meta["files"]["weights"])
            self._set_batch(batch)
        else:
            files = self.meta.get("files_opencv")
            if not files:
                raise FileNotFoundError(f"{self.folder}/model.json names no OpenCV export: "
                                        "run tools/export_opencv.py")
            for name in (files["deploy"], files["weights"]):
                check_file(self.folder / name)
            try:
                self.cv_net = cv2.dnn.readNetFromCaffe(str(self.folder / files["deploy"]),
                                                       str(self.folder / files["weights"]))
            except cv2.error as err:
                raise ValueError(f"{self.folder / files['weights']}: OpenCV cannot load this "
                                 f"model ({str(err).strip().splitlines()[-1]})") from None
            self._batch = batch

    def _set_batch(self, n: int) -> None:
        if self.backend == "caffe":
            self.net.blobs["data"].reshape(n, 1, self.size, self.size)
            self.net.reshape()
        self._batch = n

    def __repr__(self) -> str:
        return (f"LandmarkModel({str(self.folder)!r}, backend={self.backend!r}, "
                f"scheme={self.scheme.name!r}, crop_scale={self.crop_scale:g}, flip={self.flip})")

    def crops(self, grey: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The input crops (F x 1 x S x S) and their source->crop matrices: the training
        crop path (augment.face_crop), at the crop scale model.json names (default 1). A
        box with a fifth value (detect.Turned) is cropped from the image turned by it, so
        that its face is upright (detect.upright_box); its matrix still starts from this
        image's pixels."""
        from tcdcn.detect import turn_image, turn_matrix, upright_box
        if len(boxes) == 0:
            return np.zeros((0, 1, self.size, self.size), np.float32), []
        crops, mats, turned = [], [], {}
        for box in boxes:
            angle = int(box[4]) % 360 if len(box) > 4 else 0
            if angle == 0:
                crop, m = face_crop(grey, box[:4], self.size, self.crop_scale)
            else:
                if angle not in turned:
                    turned[angle] = turn_image(grey, angle)
                t = turn_matrix(angle, grey.shape)
                crop, m = face_crop(turned[angle], upright_box(box, angle, grey.shape),
                                    self.size, self.crop_scale)
                m = compose(m, t)
            crops.append(crop)
            mats.append(m)
        return np.array(crops, dtype=np.float32)[:, None], mats

    def forward(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs for F crops: landmarks in crop units, class probabilities (averaged
        with the unmirrored outputs of the mirrored crops when the model says so)."""
        if not self.flip or len(crops) == 0:
            return self._forward(crops)
        n = len(crops)
        # a face and its mirror go through the net together (batch 2 at batch 1: one pass,
        # not two)
        both = self._forward(np.concatenate([crops, crops[..., ::-1]]), 2 * self.batch)
        out = {}
        for k, v in both.items():
            plain, mirrored = v[:n], v[n:]
            if k == "landmarks":
                pts = mirrored.reshape(n, -1, 2)[:, self.scheme.flip_permutation()].copy()
                pts[..., 0] = 1.0 - pts[..., 0]   # crop units: x -> 1 - x under a mirror
                mirrored = pts.reshape(n, -1)
            elif k == "pose_prob":
                mirrored = mirrored[:, list(POSE_FLIP)]
            out[k] = (plain + mirrored) / 2
        return out

    def _forward(self, crops: np.ndarray, batch: int | None = None) -> dict[str, np.ndarray]:
        outs: dict[str, list] = {}
        batch = batch or self.batch
        for start in range(0, len(crops), batch):
            chunk = crops[start:start + batch]
            if self.backend == "opencv":
                self.cv_net.setInput(np.ascontiguousarray(chunk))
                result = dict(zip(self.outputs, self.cv_net.forward(self.outputs)))
            else:
                if len(chunk) != self._batch:
                    self._set_batch(len(chunk))
                self.net.blobs["data"].data[...] = chunk
                result = self.net.forward()
            for k in self.outputs:
                outs.setdefault(k, []).append(np.array(result[k]).reshape(len(chunk), -1))
        return {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in outs.items()}

    def predict(self, image: np.ndarray, boxes: np.ndarray, scores=None,
                refine: int = 0) -> list[Face]:
        """Faces for the given boxes of one image (BGR, BGRA or grey).

        refine > 0 re-centres each crop on a box derived from the predicted points (the
        calibrated rule of boxes.py) and predicts again, that many times; the reported box
        stays the detector's. Boxes may carry a fifth value, a turn (crops())."""
        boxes = np.asarray(boxes, dtype=np.float64)
        boxes = boxes.reshape(-1, 5 if boxes.ndim == 2 and boxes.shape[1] == 5 else 4)
        if len(boxes) == 0:
            return []
        grey = to_grey(image)
        crops, mats = self.crops(grey, boxes)
        faces = self.faces_from_outputs(self.forward(crops), boxes, mats, scores)
        for _ in range(refine):
            refined = np.array([box_for_points(f.landmarks, f.turn, grey.shape) for f in faces])
            crops, mats = self.crops(grey, refined)
            again = self.faces_from_outputs(self.forward(crops), refined, mats, scores)
            for face, new in zip(faces, again):
                face.landmarks, face.attributes = new.landmarks, new.attributes
        return faces

    def faces_from_outputs(self, out: dict, boxes: np.ndarray, mats: list, scores=None) -> list[Face]:
        """Faces in image coordinates from the net's outputs for crops made by crops()."""
        faces = []
        for i, (box, m) in enumerate(zip(np.asarray(boxes, dtype=np.float64), mats)):
            pts = denormalise(out["landmarks"][i].reshape(-1, 2), self.size)
            attributes = {}
            for task in self.tasks:
                p = out[f"{task.name}_prob"][i].ravel()
                k = int(p.argmax())
                attributes[task.name] = (task.classes[k], float(p[k]))
            faces.append(Face(box=box[:4], score=1.0 if scores is None else float(scores[i]),
                              landmarks=apply_matrix(invert_matrix(m), pts),
                              attributes=attributes, scheme=self.scheme.name,
                              turn=int(box[4]) % 360 if len(box) > 4 else 0))
        return faces
