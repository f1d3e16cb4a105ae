"""The ONNX export (tcdcn.onnx_export) and the "onnx" backend: every shipped net computes
what our Caffe computes (max |difference| <= 1e-4), a wrong layer mapping is caught, a layer
without a mapping is refused by name, and the Detector finds the same faces."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import REPO, SHARED_DATA

pytestmark = pytest.mark.caffe
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
MODELS = REPO / "models"
TOL = 1e-4


def aflw_crops(model, n=200) -> np.ndarray:
    """The model's input crops of the first n AFLW faces (boxes from their points), or
    varied random crops where the data is absent."""
    listing = SHARED_DATA / "MTFL" / "testing.txt"
    if not listing.is_file():
        return np.random.default_rng(0).integers(
            0, 256, (n, 1, model.size, model.size)).astype(np.float32)
    from tcdcn.data.datasets import load_samples
    from tcdcn.image import load_image, to_grey
    samples, _, _ = load_samples("mtfl", SHARED_DATA, listing)
    crops = [model.crops(to_grey(load_image(s.image)), np.array([s.box]))[0]
             for s in samples[:n]]
    return np.concatenate(crops)


def run_pair(stem_dir: Path, stem: str, x: np.ndarray, onnx_file: Path | None = None):
    from tcdcn.models import CaffeNet, OnnxNet
    onnx_net = OnnxNet(onnx_file or stem_dir / f"{stem}.onnx")
    names = [o.name for o in onnx_net.session.get_outputs()]
    caffe_net = CaffeNet(stem_dir / f"{stem}.prototxt" if (stem_dir / f"{stem}.prototxt").is_file()
                         else stem_dir / "deploy.prototxt", stem_dir / f"{stem}.caffemodel")
    onnx_net.setInput(x)
    caffe_net.setInput(x)
    return names, onnx_net.forward(names), caffe_net.forward(names)


@pytest.mark.parametrize("name", ["tcdcn_5pt", "tcdcn_68pt"])
def test_landmark_nets_match_caffe_on_aflw_faces(caffe, name):
    from tcdcn.landmarks import LandmarkModel
    model = LandmarkModel(MODELS / name, backend="caffe")
    crops = aflw_crops(model)
    names, got, want = run_pair(MODELS / name, name, crops)
    assert "landmarks" in names
    for n, a, b in zip(names, got, want):
        assert a.shape == b.shape and float(np.abs(a - b).max()) <= TOL, n


@pytest.mark.parametrize("folder, stem, shape", [
    ("mtcnn", "det1", (1, 3, 67, 93)), ("mtcnn", "det2", (16, 3, 24, 24)),
    ("mtcnn", "det3", (16, 3, 48, 48)), ("snet", "snet", (2, 1, 160, 120)),
])
def test_detector_nets_match_caffe_on_their_own_inputs(caffe, astronaut, folder, stem, shape):
    """MTCNN's and S-Net's inputs cut from a photo, scaled as their code scales them."""
    n, c, h, w = shape
    image = astronaut if c == 3 else cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)[..., None]
    rng = np.random.default_rng(1)
    x = np.stack([cv2.resize(image[y:y + 3 * h, x:x + 3 * w], (w, h)).reshape(h, w, c)
                  for y, x in rng.integers(0, 300, (n, 2))]).transpose(0, 3, 1, 2)
    x = ((x.astype(np.float32) - 127.5) * 0.0078125)
    names, got, want = run_pair(MODELS / folder, stem, x)
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape and float(np.abs(a - b).max()) <= TOL, name


def test_a_wrong_mapping_is_caught(caffe, tmp_path, monkeypatch):
    """The parity check fails when a layer's mapping is wrong: the LocallyConnected
    rewrite with one location's weights dropped."""
    import tcdcn.export
    from tcdcn.onnx_export import export_onnx
    real = tcdcn.export.lc_as_convolution

    def broken(*args, **kwargs):
        w, b = real(*args, **kwargs)
        w[: w.shape[0] // 4] = 0
        return w, b
    monkeypatch.setattr(tcdcn.export, "lc_as_convolution", broken)
    folder = MODELS / "tcdcn_68pt"
    bad = export_onnx(folder / "deploy.prototxt", folder / "tcdcn_68pt.caffemodel",
                      tmp_path / "bad.onnx")
    size = json.loads((folder / "model.json").read_text())["input"]["size"]
    x = np.random.default_rng(0).integers(0, 256, (8, 1, size, size)).astype(np.float32)
    _, got, want = run_pair(folder, "tcdcn_68pt", x, onnx_file=bad)
    assert float(np.abs(got[0] - want[0]).max()) > 100 * TOL


def test_a_layer_without_a_mapping_is_refused_by_name(caffe, tmp_path):
    from tcdcn.onnx_export import UnsupportedLayer, caffe_to_onnx
    folder = MODELS / "tcdcn_68pt"
    text = (folder / "deploy.prototxt").read_text()
    text += 'layer { name: "split_it" type: "Slice" bottom: "landmarks" top: "a" top: "b" }\n'
    (tmp_path / "deploy.prototxt").write_text(text)
    with pytest.raises(UnsupportedLayer, match="'split_it' of type Slice"):
        caffe_to_onnx(tmp_path / "deploy.prototxt", folder / "tcdcn_68pt.caffemodel")


def test_the_shipped_onnx_files_are_today_s_export(caffe, tmp_path):
    """Each shipped .onnx is what the exporter writes now from the shipped Caffe files
    (same graph, same weights), and model.json records it with its hash."""
    import onnx
    from tcdcn.onnx_export import DETECTOR_NETS, caffe_to_onnx
    nets = [("tcdcn_5pt", "tcdcn_5pt", False), ("tcdcn_68pt", "tcdcn_68pt", False)] + \
        [(folder, stem, dynamic) for folder, stems in DETECTOR_NETS.items()
         for stem, _, dynamic in stems]
    for folder, stem, dynamic in nets:
        d = MODELS / folder
        deploy = d / (f"{stem}.prototxt" if (d / f"{stem}.prototxt").is_file() else "deploy.prototxt")
        fresh = caffe_to_onnx(deploy, d / f"{stem}.caffemodel", spatial_dynamic=dynamic)
        shipped = onnx.load(str(d / f"{stem}.onnx"))
        onnx.checker.check_model(shipped, full_check=True)
        assert shipped.opset_import[0].version >= 17
        assert fresh.graph.SerializeToString() == shipped.graph.SerializeToString(), stem
        meta = json.loads((d / "model.json").read_text())
        assert f"{stem}.onnx" in meta["sha256"] and f"{stem}.onnx" in meta["files_onnx"].values()


def test_the_onnx_backend_finds_the_same_faces(caffe, astronaut):
    """Detector(backend="onnx") runs every net in onnxruntime: the same faces as our
    Caffe backend within 0.05 px, on the astronaut and borders of AFLW faces."""
    from tcdcn.api import Detector
    images = [astronaut, cv2.resize(astronaut, (300, 300)), cv2.flip(astronaut, 1)]
    listing = SHARED_DATA / "MTFL" / "testing.txt"
    if listing.is_file():
        from tcdcn.data.datasets import read_mtfl
        images += [cv2.imread(str(s.image)) for s in read_mtfl(listing, SHARED_DATA / "MTFL")[:20]]
    onnx_det, caffe_det = Detector(backend="onnx"), Detector(backend="caffe")
    assert onnx_det.describe()["backend"] == "onnx"
    found = 0
    for image in images:
        a, b = onnx_det(image), caffe_det(image)
        assert len(a) == len(b)
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fa.box, fb.box, atol=0.05)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=0.05)
            assert fa.attributes.keys() == fb.attributes.keys()
        found += len(a)
    assert found >= len(images) - 1


def test_the_command_line_takes_the_onnx_backend(tmp_path, astronaut, python_exe):
    from tests.helpers import run
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), astronaut)
    res = run([python_exe, REPO / "tools" / "detect.py", photo, "--out", tmp_path / "o",
               "--backend", "onnx"])
    assert res.returncode == 0 and "onnx backend" in res.stderr, res.stderr[-2000:]
    faces = json.loads((tmp_path / "o" / "faces.jsonl").read_text())["faces"]
    assert len(faces) >= 1
