"""Running a trained TCDCN model: face box -> 40x40 crop -> landmarks and attributes.

A model folder holds deploy.prototxt, a .caffemodel and model.json (the self-description:
input size, normalisation, scheme, attribute names, detector calibration, numbers).
"""
from __future__ import annotations

import numbers
from pathlib import Path

import cv2
import numpy as np

from tcdcn.boxes import box_from_landmarks, five_points
from tcdcn.face import Face
from tcdcn.geometry import (
    apply_matrix,
    compose,
    denormalise,
    face_crop,
    invert_matrix,
    turn_image,
    turn_matrix,
    turned_back,
    upright_box,
)
from tcdcn.image import to_grey
from tcdcn.models import (
    BACKENDS,
    OnnxNet,
    check_file,
    default_backend,
    has_caffe_importer,
    load_caffe_net,
    opencv_net,
    read_model_json,
    shared,
    verify_files,
)
from tcdcn.schemes import POSE_FLIP, SCHEMES, TASKS


def box_for_points(points: np.ndarray, turn: int, shape) -> np.ndarray:
    """The box (5 values: with its turn) of a face's points by the box rule of boxes.py,
    which holds for upright faces: for a face found turned (Face.turn), the rule is applied
    in the turned image and the box mapped back."""
    upright = box_from_landmarks(apply_matrix(turn_matrix(turn, shape), points))
    return np.append(turned_back(upright, turn, shape)[0], turn)


def with_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    """Probabilities (N x K) as the logits divided by t would give them: p^(1/t),
    normalised (evaluation.calibration chooses t on validation)."""
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / t
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


# A face whose predicted NME (uncertainty / eye distance) reaches this is predicted to be a
# failure: Face.quality 0 (the failure threshold of evaluate's FR@10).
FAILURE_NME = 0.10


def point_uncertainty(logscale: np.ndarray, distribution: str, size: int, matrix: np.ndarray,
                      factor: float = 1.0) -> np.ndarray:
    """Each point's predicted error in image pixels from the net's log-scales (2K, crop
    units): the expected absolute error per coordinate (Laplace: b; Gaussian:
    sigma sqrt(2 / pi)), times `factor` (chosen on validation, model.json), combined as
    sqrt(ex^2 + ey^2) and mapped through the crop matrix's scale."""
    scale = np.exp(np.asarray(logscale, np.float64).reshape(-1, 2)) * factor
    if distribution == "gaussian":
        scale = scale * np.sqrt(2 / np.pi)
    elif distribution != "laplace":
        raise ValueError(f"distribution must be laplace or gaussian, not {distribution!r}")
    m = np.asarray(matrix, np.float64)[:2, :2]
    crop_px_per_image_px = np.sqrt(abs(np.linalg.det(m)))
    return np.hypot(scale[:, 0], scale[:, 1]) * size / crop_px_per_image_px


def eye_distance(points: np.ndarray) -> float:
    """The distance between a face's eye centres (five_points; any scheme), at least 1e-6."""
    eyes = five_points(np.asarray(points, np.float64))[:2]
    return max(float(np.linalg.norm(eyes[0] - eyes[1])), 1e-6)


def expected_nme(uncertainty: np.ndarray, points: np.ndarray) -> float:
    """The predicted NME of a face: mean point uncertainty over the distance between the
    predicted eye centres."""
    return float(np.mean(uncertainty)) / eye_distance(points)


def quality_from(uncertainty: np.ndarray, points: np.ndarray) -> float:
    """0..1: 1 - predicted NME / FAILURE_NME, clipped."""
    return float(np.clip(1.0 - expected_nme(uncertainty, points) / FAILURE_NME, 0.0, 1.0))


MAX_BATCH = 1024   # crops per forward pass; Caffe aborts the process on blobs far larger


def check_batch(batch) -> int:
    """A batch size Caffe and OpenCV can take, checked before they see it (Caffe aborts the
    whole process on a negative size or an oversized blob)."""
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) \
            or not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be a whole number from 1 to {MAX_BATCH}, not {batch!r}")
    return int(batch)


class _CaffeLandmarks:
    """A pycaffe landmark net that keeps its input shape until a batch of another size."""

    def __init__(self, net, size: int, batch: int, deploy: Path):
        self.net, self.size = net, size
        shape = tuple(net.blobs["data"].data.shape[2:])
        if shape != (size, size):   # else a LocallyConnected layer aborts the process
            raise ValueError(f"{deploy}: takes {shape[1]}x{shape[0]} inputs, but model.json's "
                             f"input.size is {size}")
        self._reshape(batch)

    def _reshape(self, n: int) -> None:
        self.net.blobs["data"].reshape(n, 1, self.size, self.size)
        self.net.reshape()
        self.batch = n

    def forward(self, chunk: np.ndarray) -> dict:
        if len(chunk) != self.batch:
            self._reshape(len(chunk))
        self.net.blobs["data"].data[...] = chunk
        return self.net.forward()


class LandmarkModel:
    """A trained model, run on boxes in batches.

    backend "caffe": pycaffe with this project's build (deploy.prototxt + weights);
    backend "opencv": stock OpenCV dnn with the export of tools/export_opencv.py (no
    LocallyConnected layer, so no Caffe build is needed); "auto" (the default): "caffe"
    where it imports, else "opencv".
    """

    def __init__(self, folder: str | Path, batch: int = 64, backend: str = "auto",
                 sharing: str = "copies", verify: bool = True):
        if backend == "auto":
            backend = default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, not {backend!r}")
        check_batch(batch)
        self.folder = Path(folder)
        self.meta = read_model_json(self.folder)
        self.size = int(self.meta["input"]["size"])
        # the crop's side in box sides (chosen on validation; 1: the box itself)
        self.crop_scale = float(self.meta["input"].get("crop_scale", 1.0))
        # test-time flip averaging: also predict on the mirrored crop, unmirror, average
        self.flip = bool(self.meta.get("test_time_flip", False))
        self.scheme = SCHEMES[self.meta["landmark_scheme"]]
        self.tasks = [t for t in TASKS if t.name in self.meta.get("attributes", {})]
        # attribute probabilities' temperatures, chosen on validation (model.json)
        self.temperature = {k: float(v) for k, v in
                            self.meta.get("attribute_temperature", {}).items()}
        self.backend = backend
        self.batch = batch
        self.outputs = ["landmarks"] + [f"{t.name}_prob" for t in self.tasks]
        # the per-coordinate uncertainty head (training stage "uncertainty"), if any
        self.uncertainty = self.meta.get("net_options", {}).get("uncertainty") or ""
        self.uncertainty_factor = float(
            self.meta.get("uncertainty_calibration", {}).get("factor", 1.0))
        if self.uncertainty:
            self.outputs.append("landmark_logscale")
        # the net, one per thread (or one behind a lock: models.shared): a pycaffe net keeps
        # its input blob's shape between calls, OpenCV's its input
        if backend == "caffe":
            deploy = self.folder / self.meta["files"]["deploy"]
            weights = self.folder / self.meta["files"]["weights"]
            if verify:   # against model.json's sha256 (refresh_deploy compares, skips it)
                verify_files(self.folder, (deploy.name, weights.name), self.meta)
            self.nets = shared(lambda: _CaffeLandmarks(load_caffe_net(deploy, weights),
                                                       self.size, batch, deploy), sharing)
        elif backend == "onnx" or not has_caffe_importer():
            # onnxruntime, or OpenCV 5's dnn (no Caffe importer): the ONNX export
            name = self.meta.get("files_onnx", {}).get("net")
            if not name:
                raise FileNotFoundError(
                    f"{self.folder}/model.json names no ONNX export (needed by "
                    + ("onnxruntime" if backend == "onnx" else
                       f"OpenCV {cv2.__version__}, which has no Caffe importer")
                    + f"): run tools/export_onnx.py --model {self.folder}")
            path = self.folder / name
            check_file(path)
            if verify:
                verify_files(self.folder, (name,), self.meta)
            if backend == "onnx":
                self.nets = shared(lambda: OnnxNet(path), sharing)
            else:
                self.nets = shared(lambda: opencv_net(path), sharing)
        else:
            files = self.meta.get("files_opencv")
            if not files:
                raise FileNotFoundError(f"{self.folder}/model.json names no OpenCV export: "
                                        "run tools/export_opencv.py")
            deploy, weights = self.folder / files["deploy"], self.folder / files["weights"]
            if verify:
                verify_files(self.folder, (deploy.name, weights.name), self.meta)
            self.nets = shared(lambda: opencv_net(weights, deploy), sharing)

    @property
    def net(self):
        """This thread's loaded net (pycaffe's Net or OpenCV's), to inspect or time it."""
        with self.nets.use() as held:
            return held.net if isinstance(held, _CaffeLandmarks) else held

    def __repr__(self) -> str:
        return (f"LandmarkModel({str(self.folder)!r}, backend={self.backend!r}, "
                f"scheme={self.scheme.name!r}, crop_scale={self.crop_scale:g}, flip={self.flip})")

    def crops(self, grey: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The input crops (F x 1 x S x S) and their source->crop matrices: the training
        crop path (geometry.face_crop), at the crop scale model.json names (default 1). A
        box with a fifth value (search.Turned) is cropped from the image turned by it, so
        that its face is upright (detect.upright_box); its matrix still starts from this
        image's pixels."""
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
            elif k == "landmark_logscale":   # a scale has no sign: only the pairs swap
                mirrored = mirrored.reshape(n, -1, 2)[:, self.scheme.flip_permutation()]
                mirrored = mirrored.reshape(n, -1)
            elif k == "pose_prob":
                mirrored = mirrored[:, list(POSE_FLIP)]
            out[k] = (plain + mirrored) / 2
        return out

    def _forward(self, crops: np.ndarray, batch: int | None = None) -> dict[str, np.ndarray]:
        outs: dict[str, list] = {}
        batch = batch or self.batch
        for start in range(0, len(crops), batch):
            chunk = crops[start:start + batch]
            with self.nets.use() as net:
                if self.backend != "caffe":
                    net.setInput(np.ascontiguousarray(chunk))
                    result = dict(zip(self.outputs, net.forward(self.outputs)))
                else:
                    result = net.forward(chunk)
                result = {k: np.array(result[k]).reshape(len(chunk), -1) for k in self.outputs}
            for k in self.outputs:
                outs.setdefault(k, []).append(result[k])
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
                face.uncertainty, face.quality = new.uncertainty, new.quality
        return faces

    def faces_from_outputs(self, out: dict, boxes: np.ndarray, mats: list, scores=None) -> list[Face]:
        """Faces in image coordinates from the net's outputs for crops made by crops()."""
        faces = []
        for i, (box, m) in enumerate(zip(np.asarray(boxes, dtype=np.float64), mats)):
            pts = denormalise(out["landmarks"][i].reshape(-1, 2), self.size)
            attributes = {}
            for task in self.tasks:
                p = out[f"{task.name}_prob"][i].ravel()
                t = self.temperature.get(task.name)
                if t:   # calibrated on validation (tools/calibrate_attributes.py)
                    p = with_temperature(p[None], t)[0]
                k = int(p.argmax())
                attributes[task.name] = (task.classes[k], float(p[k]))
            landmarks = apply_matrix(invert_matrix(m), pts)
            uncertainty = quality = None
            if self.uncertainty:
                uncertainty = point_uncertainty(out["landmark_logscale"][i], self.uncertainty,
                                                self.size, m, self.uncertainty_factor)
                quality = quality_from(uncertainty, landmarks)
            faces.append(Face(box=box[:4], score=1.0 if scores is None else float(scores[i]),
                              landmarks=landmarks, attributes=attributes,
                              scheme=self.scheme.name,
                              turn=int(box[4]) % 360 if len(box) > 4 else 0,
                              uncertainty=uncertainty, quality=quality))
        return faces
