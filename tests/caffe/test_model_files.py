"""A model folder is checked before use: a missing, empty, truncated, random or foreign
caffemodel, a missing deploy.prototxt or a broken model.json is an error that names the
file (never a glog abort, never a net silently left at its random initialisation)."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.helpers import REPO

MODEL = REPO / "models" / "tcdcn_5pt"
pytestmark = pytest.mark.caffe


@pytest.fixture
def copy(tmp_path):
    """The released model without its recorded hashes (as a model a user trained and copied
    by hand): the checks below the sha256 one must hold on their own
    (test_api_values.py checks the hashes)."""
    folder = tmp_path / "model"
    shutil.copytree(MODEL, folder)
    meta = json.loads((folder / "model.json").read_text())
    del meta["sha256"]
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def weights(folder):
    return folder / json.loads((folder / "model.json").read_text())["files"]["weights"]


@pytest.mark.parametrize("content, message", [
    (lambda data: b"", "empty file"),
    (lambda data: data[: len(data) // 2], r"not a caffemodel \(truncated or corrupt\)"),
    (lambda data: os.urandom(4096), r"not a caffemodel \(truncated or corrupt\)"),
])
def test_bad_weights_are_named(caffe, copy, content, message):
    from tcdcn.landmarks import LandmarkModel
    w = weights(copy)
    w.write_bytes(content(w.read_bytes()))
    with pytest.raises(ValueError, match=message) as err:
        LandmarkModel(copy)
    assert str(w) in str(err.value)


def test_weights_of_another_net_are_refused(caffe, copy, tmp_path):
    from tcdcn.landmarks import LandmarkModel
    from tcdcn.training.net import NetOptions, deploy_net
    other = tmp_path / "wide.prototxt"
    other.write_text(str(deploy_net(NetOptions(width=1.5))))
    net = caffe.Net(str(other), caffe.TEST)
    net.save(str(weights(copy)))
    with pytest.raises(ValueError, match=r"layer 'conv1' has weights of shapes"):
        LandmarkModel(copy)


def test_missing_files_and_broken_description(caffe, copy, tmp_path):
    from tcdcn.landmarks import LandmarkModel
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        LandmarkModel(tmp_path / "nowhere")
    (copy / "deploy.prototxt").unlink()
    with pytest.raises(FileNotFoundError, match=r"deploy.prototxt: no such file"):
        LandmarkModel(copy)
    (copy / "model.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"model.json: not a model description"):
        LandmarkModel(copy)
    (copy / "model.json").write_text(json.dumps({"input": {}}))
    with pytest.raises(ValueError, match=r"model.json: not a model description"):
        LandmarkModel(copy)


def test_the_real_model_still_loads_with_its_weights(caffe):
    import numpy as np
    from caffe.proto import caffe_pb2
    from tcdcn.landmarks import LandmarkModel
    model = LandmarkModel(MODEL)
    proto = caffe_pb2.NetParameter()
    proto.ParseFromString(weights(MODEL).read_bytes())
    conv1 = next(l for l in proto.layer if l.name == "conv1")
    np.testing.assert_array_equal(model.net.params["conv1"][0].data.ravel(),
                                  np.array(conv1.blobs[0].data, np.float32))
