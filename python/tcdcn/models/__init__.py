"""Model folders: the bundled-model lookup, model.json, loading nets (pycaffe or OpenCV dnn)."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

import numpy as np

from tcdcn.build.caffe_source import sha256_file
from tcdcn.paths import write_json
from tcdcn.schemes import SCHEMES


def bundled(name: str) -> Path:
    """A model shipped inside the package (tcdcn/models/NAME: "tcdcn_5pt", "tcdcn_68pt",
    "mtcnn", "snet"), found through importlib.resources so that it works from a checkout
    and from an installed wheel. The one place that knows where the bundled models are."""
    return Path(str(files("tcdcn.models") / name))


DEFAULT_MODEL = bundled("tcdcn_5pt")


def resolve_model(model: str | Path) -> Path:
    """A model folder, or the name of a bundled one ("tcdcn_5pt", "tcdcn_68pt")."""
    path = Path(model)
    if not path.exists() and len(path.parts) == 1 and bundled(str(path)).is_dir():
        return bundled(str(path))
    return path


# "caffe": this project's pycaffe; "onnx": onnxruntime on the shipped ONNX files;
# "opencv": OpenCV dnn, from the Caffe files where it has the Caffe importer (OpenCV 4),
# else from the ONNX files (OpenCV 5)
BACKENDS = ("caffe", "onnx", "opencv")


def has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


def has_caffe_importer() -> bool:
    import cv2
    return hasattr(cv2.dnn, "readNetFromCaffe")


def default_backend() -> str:
    """"caffe" where this project's pycaffe imports (tools/setup.sh), else "onnx" where
    onnxruntime does, else "opencv"."""
    try:
        import caffe  # noqa: F401
        from caffe import layer_type_list
        if "LocallyConnected" in layer_type_list():
            return "caffe"
    except Exception:   # no pycaffe, or another Caffe without our layers
        pass
    return "onnx" if has_onnxruntime() else "opencv"


class OnnxNet:
    """onnxruntime behind OpenCV dnn's setInput/forward calls (the "onnx" backend)."""

    def __init__(self, path: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("the 'onnx' backend needs onnxruntime: pip install "
                              "'./python[onnx]' (or onnxruntime)") from None
        check_file(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:   # onnxruntime raises its own exception types
            raise ValueError(f"{path}: onnxruntime cannot load this model ({err})") from None
        self.input = self.session.get_inputs()[0].name
        self.blob = None

    def setInput(self, blob: np.ndarray) -> None:   # noqa: N802 (OpenCV's name)
        self.blob = np.ascontiguousarray(blob, dtype=np.float32)

    def forward(self, names):
        single = isinstance(names, str)
        outs = self.session.run([names] if single else list(names), {self.input: self.blob})
        return outs[0] if single else outs


def load_net(folder: Path, stem: str, backend: str, what: str = "model"):
    """The net `stem` of a model folder (stem.prototxt + stem.caffemodel, stem.onnx) as an
    object with OpenCV dnn's setInput/forward: pycaffe ("caffe"), onnxruntime ("onnx") or
    OpenCV dnn ("opencv": the Caffe files with OpenCV 4, the ONNX file with OpenCV 5). The
    files are checked against the folder's model.json sha256 first."""
    folder = Path(folder)
    caffe_files = [f"{stem}.prototxt", f"{stem}.caffemodel"]
    if backend == "caffe":
        verify_files(folder, caffe_files)
        return CaffeNet(folder / caffe_files[0], folder / caffe_files[1])
    if backend == "onnx":
        verify_files(folder, [f"{stem}.onnx"])
        return OnnxNet(folder / f"{stem}.onnx")
    if backend != "opencv":
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if not has_caffe_importer():
        verify_files(folder, [f"{stem}.onnx"])
        return opencv_net(folder / f"{stem}.onnx", what=what)
    verify_files(folder, caffe_files)
    return opencv_net(folder / caffe_files[1], folder / caffe_files[0], what)


def opencv_net(weights: Path, deploy: Path | None = None, what: str = "model"):
    """OpenCV dnn's net from Caffe files (deploy given) or an ONNX file; errors name it."""
    import cv2
    for f in (weights,) if deploy is None else (deploy, weights):
        check_file(f)
    try:
        if deploy is None:
            return cv2.dnn.readNetFromONNX(str(weights))
        return cv2.dnn.readNetFromCaffe(str(deploy), str(weights))
    except cv2.error as err:
        raise ValueError(f"{weights}: OpenCV cannot load this {what} "
                         f"({str(err).strip().splitlines()[-1]})") from None


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


def record_hashes(folder: Path, names) -> dict:
    """Record the sha256 of each named file of `folder` in its model.json ("sha256"), for
    verify_files; the other entries stay. Returns the updated description."""
    folder = Path(folder)
    meta = json.loads((folder / "model.json").read_text())
    meta.setdefault("sha256", {}).update({n: sha256_file(folder / n) for n in sorted(set(names))})
    write_json(folder / "model.json", meta)
    return meta


def verify_files(folder: Path, names, meta: dict | None = None) -> None:
    """Check each named file of `folder` against the sha256 its model.json records (where it
    records one): a file changed after release (weights shuffled, a partial copy) is an error
    naming it, not a net that loads and predicts garbage."""
    folder = Path(folder)
    if meta is None:
        path = folder / "model.json"
        if not path.is_file():
            return
        meta = json.loads(path.read_text())
    recorded = meta.get("sha256", {})
    for name in names:
        want = recorded.get(name)
        if want is None:
            continue
        check_file(folder / name)
        have = sha256_file(folder / name)
        if have != want:
            raise ValueError(f"{folder / name}: sha256 {have[:16]}... differs from the "
                             f"{want[:16]}... that {folder / 'model.json'} records: the file "
                             "was changed or damaged after release; restore it (reinstall "
                             "the package, or copy the model folder again)")


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




class CaffeNet:
    """pycaffe behind OpenCV dnn's setInput/forward calls (this project's Caffe backend)."""

    def __init__(self, deploy: Path, weights: Path):
        pass
        self.net = load_caffe_net(deploy, weights)
        self.input = self.net.inputs[0]

    def setInput(self, blob: np.ndarray) -> None:   # noqa: N802 (OpenCV's name)
        data = self.net.blobs[self.input]
        if data.data.shape != blob.shape:
            data.reshape(*blob.shape)
            self.net.reshape()
        data.data[...] = blob

    def forward(self, names):
        out = self.net.forward()
        if isinstance(names, str):
            return out[names].copy()
        return [out[n].copy() for n in names]


# How a loaded net that is not reentrant (OpenCV dnn's Net, pycaffe's Net: each keeps its
# input and blobs between setInput and forward) is shared by threads calling one detector:
# "copies": one instance per thread, loaded on the thread's first use; "lock": one
# instance, one thread at a time. tools/bench_threads.py measures both.
SHARING = ("copies", "lock")


class PerThread:
    """One instance per thread, made by `load()` (the first now, for the creating thread,
    so that a bad file fails at construction)."""

    def __init__(self, load):
        self._load = load
        self._local = threading.local()
        self._local.value = load()

    @contextmanager
    def use(self):
        try:
            value = self._local.value
        except AttributeError:
            value = self._local.value = self._load()
        yield value


class Locked:
    """One instance, used by one thread at a time."""

    def __init__(self, load):
        self._value = load()
        self._lock = threading.Lock()

    @contextmanager
    def use(self):
        with self._lock:
            yield self._value


def shared(load, sharing: str = "copies"):
    """A holder of what `load()` makes, shared by threads as `sharing` says (SHARING):
    `with holder.use() as net: net.setInput(...); net.forward(...)`."""
    if sharing == "copies":
        return PerThread(load)
    if sharing == "lock":
        return Locked(load)
    raise ValueError(f"sharing must be one of {SHARING}, not {sharing!r}")
