"""The LocallyConnected and MultiLabelData layers through pycaffe: NetSpec, prototxt files,
an independent numpy reference, LMDB round trips, errors, and a multi-task net that trains."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import run

pytestmark = pytest.mark.caffe


def lc_numpy(x, w, b, kernel, stride, pad):
    """Locally connected forward in numpy: w is (Ho*Wo*M, C, k, k), b is (M, Ho, Wo)."""
    n, c, h, wd = x.shape
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (wd + 2 * pad - kernel) // stride + 1
    m = w.shape[0] // (ho * wo)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    w = w.reshape(ho, wo, m, c, kernel, kernel)
    y = np.empty((n, m, ho, wo), dtype=np.float64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + kernel, j * stride:j * stride + kernel]
            y[:, :, i, j] = np.einsum("nckl,mckl->nm", patch, w[i, j])
    return y + (b[None] if b is not None else 0)


def write_records(path, images, labels):
    from tcdcn.data.lmdb_io import encode_datum, write_lmdb
    return write_lmdb(path, (encode_datum(im, lab) for im, lab in zip(images, labels)))


def test_locally_connected_from_prototxt_matches_numpy(caffe, tmp_path):
    prototxt = tmp_path / "lc.prototxt"
    prototxt.write_text("""
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 2 dim: 6 dim: 6 } } }
layer { name: "lc" type: "LocallyConnected" bottom: "x" top: "y"
  locally_connected_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1
    weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }
""")
    net = caffe.Net(str(prototxt), caffe.TEST)
    assert net.params["lc"][0].data.shape == (3 * 3 * 4, 2, 3, 3)
    assert net.params["lc"][1].data.shape == (4, 3, 3)
    x = np.random.default_rng(1).standard_normal((3, 2, 6, 6)).astype(np.float32)
    net.blobs["x"].data[...] = x
    y = net.forward()["y"]
    expected = lc_numpy(x.astype(np.float64), net.params["lc"][0].data.astype(np.float64),
                        net.params["lc"][1].data, kernel=3, stride=2, pad=1)
    assert y.shape == (3, 4, 3, 3)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_layers_from_netspec(caffe, tmp_path):
    from caffe import layers as L
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(6, 1, 8, 8), dtype=np.uint8)
    labels = rng.standard_normal((6, 5)).astype(np.float32)
    write_records(tmp_path / "db", images, labels)

    n = caffe.NetSpec()
    n.data, n.label = L.MultiLabelData(source=str(tmp_path / "db"), batch_size=4, scale=0.5,
                                       ntop=2)
    n.lc = L.LocallyConnected(n.data, num_output=3, kernel_size=2, stride=2,
                              weight_filler=dict(type="xavier"))
    text = str(n.to_proto())
    assert 'type: "MultiLabelData"' in text and "multilabel_data_param" in text
    assert 'type: "LocallyConnected"' in text and "locally_connected_param" in text
    (tmp_path / "net.prototxt").write_text(text)
    net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TRAIN)
    out = net.forward()
    assert out["lc"].shape == (4, 3, 4, 4)
    assert out["label"].shape == (4, 5)
    np.testing.assert_array_equal(net.blobs["data"].data, images[:4] * 0.5)
    np.testing.assert_array_equal(out["label"], labels[:4])


def test_multilabel_data_reads_records_in_order_and_wraps(caffe, tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(5, 3, 4, 4), dtype=np.uint8)
    labels = rng.standard_normal((5, 14)).astype(np.float32)
    assert write_records(tmp_path / "db", images, labels) == 5
    (tmp_path / "net.prototxt").write_text(f"""
layer {{ name: "d" type: "MultiLabelData" top: "data" top: "label"
  multilabel_data_param {{ source: "{tmp_path / 'db'}" batch_size: 2 }} }}
""")
    net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TRAIN)
    order = []
    for _ in range(4):  # 8 records from a database of 5: 0 1 2 3 4 0 1 2
        net.forward()
        for item in range(2):
            matches = [r for r in range(5) if np.array_equal(net.blobs["data"].data[item], images[r])]
            assert len(matches) == 1
            np.testing.assert_array_equal(net.blobs["label"].data[item], labels[matches[0]])
            order.append(matches[0])
    assert order == [0, 1, 2, 3, 4, 0, 1, 2]


def test_record_with_wrong_label_count_stops_with_its_key(tmp_path, python_exe):
    from tcdcn.data.lmdb_io import encode_datum, write_lmdb
    image = np.zeros((1, 4, 4), np.uint8)
    records = [encode_datum(image, np.zeros(3)), encode_datum(image, np.zeros(3)),
               encode_datum(image, np.zeros(2)), encode_datum(image, np.zeros(3))]
    write_lmdb(tmp_path / "db", records)
    (tmp_path / "net.prototxt").write_text(f"""
layer {{ name: "d" type: "MultiLabelData" top: "data" top: "label"
  multilabel_data_param {{ source: "{tmp_path / 'db'}" batch_size: 2 }} }}
""")
    script = (f"import caffe; net = caffe.Net({str(tmp_path / 'net.prototxt')!r}, caffe.TRAIN)\n"
              "for _ in range(3): net.forward()\n")
    out = run([python_exe, "-c", script])
    assert out.returncode != 0
    assert "record 0000000002 has 2 labels (Datum.float_data), expected 3" in out.stderr


# -- a small multi-task net with both layers trains --------------------------------------

@pytest.mark.slow
def test_multitask_net_with_both_layers_trains(caffe, tmp_path):
    from tcdcn.data.synthetic import dot_images, dot_net
    images, points, classes = dot_images(512, size=16, rng=np.random.default_rng(4))
    labels = np.concatenate([points, classes[:, None].astype(np.float32)], axis=1)
    write_records(tmp_path / "db", images, labels)
    (tmp_path / "net.prototxt").write_text(str(dot_net(str(tmp_path / "db"), 32)))
    (tmp_path / "solver.prototxt").write_text(f"""
net: "{tmp_path / 'net.prototxt'}"
base_lr: 0.05
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
max_iter: 400
solver_mode: CPU
random_seed: 7
""")
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))

    def mean_losses(steps: int) -> tuple[float, float]:
        lm, cl = [], []
        for _ in range(steps):
            solver.step(1)
            lm.append(float(solver.net.blobs["landmark_loss"].data))
            cl.append(float(solver.net.blobs["cls_loss"].data))
        return float(np.mean(lm)), float(np.mean(cl))

    first_lm, first_cl = mean_losses(10)
    solver.step(300)
    last_lm, last_cl = mean_losses(20)
    assert last_lm < 0.25 * first_lm, (first_lm, last_lm)
    assert last_cl < 0.5 * first_cl, (first_cl, last_cl)


@pytest.mark.slow
def test_synthetic_check_tool_trains_from_the_shell(tmp_path, python_exe):
    """tools/synthetic_check.py: LMDB -> caffe train -> pycaffe, with a measured error."""
    import json

    from tests.helpers import REPO
    out = run([python_exe, REPO / "tools" / "synthetic_check.py", "--out", tmp_path,
               "--train", "2048", "--test", "128", "--iters", "800"])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads((tmp_path / "demo.json").read_text())
    assert report["last_loss"] < 0.2 * report["first_loss"]
    assert report["point_error_px"]["mean"] < 1.0      # dots are 1.5 px wide, image 16 px
    assert report["class_accuracy"] > 0.9
    assert (tmp_path / "demo.png").is_file()
