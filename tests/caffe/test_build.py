"""The patched Caffe build: pycaffe under this numpy, the caffe tool, the layers' gtests,
and the build cache."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tests.helpers import REPO, run

pytestmark = pytest.mark.caffe


def test_pycaffe_imports_under_this_numpy(caffe, python_exe):
    # In a fresh interpreter, so that nothing imported earlier can mask a failure.
    out = run([python_exe, "-c",
               "import numpy, caffe, caffe._caffe as c; print(numpy.__version__, caffe.__version__)"])
    assert out.returncode == 0, out.stderr
    numpy_version, caffe_version = out.stdout.split()
    assert numpy_version == np.__version__
    assert caffe_version == "1.0.0"


def test_blob_data_round_trips_through_numpy(caffe, tmp_path):
    """A net's blobs are numpy views: write input, run InnerProduct, compare with numpy."""
    prototxt = tmp_path / "ip.prototxt"
    prototxt.write_text("""
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "gaussian" std: 1 } } }
""")
    net = caffe.Net(str(prototxt), caffe.TEST)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    w, b = net.params["ip"][0].data, net.params["ip"][1].data
    assert net.blobs["y"].data.dtype == np.float32
    np.testing.assert_allclose(net.blobs["y"].data, x @ w.T + b, rtol=1e-5, atol=1e-5)


def test_caffe_tool_runs(build):
    out = run([build.caffe_tool, "--version"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "caffe version 1.0.0"


def test_caffe_tool_is_on_the_environment_path(python_exe):
    from pathlib import Path
    linked = Path(python_exe).parent / "caffe"
    assert linked.is_file(), "setup.sh links bin/caffe into the environment"
    assert run([linked, "--version"]).returncode == 0


def test_new_layers_are_registered(caffe):
    types = set(caffe.layer_type_list())
    assert {"LocallyConnected", "MultiLabelData", "Convolution", "MVN"} <= types


# -- a tiny net trained from the shell and through pycaffe ------------------------------

def _two_class_records(n: int, rng: np.random.Generator):
    """4x4 images: class 0 is bright on the left half, class 1 on the right, plus noise."""
    from tcdcn.data.lmdb_io import encode_datum
    for i in range(n):
        cls = i % 2
        img = rng.integers(0, 60, size=(1, 4, 4))
        img[:, :, 2 * cls:2 * cls + 2] += 150
        yield encode_datum(img.astype(np.uint8), label=cls)


TINY_NET = """
name: "tiny"
layer {{ name: "data" type: "Data" top: "data" top: "label"
        data_param {{ source: "{db}" backend: LMDB batch_size: 16 }}
        transform_param {{ scale: 0.00390625 }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param {{ num_output: 2 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""

TINY_SOLVER = """
net: "{net}"
base_lr: 0.5
lr_policy: "fixed"
momentum: 0.9
max_iter: 150
display: 50
snapshot_prefix: "{prefix}"
solver_mode: CPU
random_seed: 1
"""

LOSS_THRESHOLD = 0.1   # chance level is ln 2 = 0.69


@pytest.fixture(scope="module")
def tiny_solver(tmp_path_factory):
    from tcdcn.data.lmdb_io import write_lmdb
    root = tmp_path_factory.mktemp("tiny")
    write_lmdb(root / "train_lmdb", _two_class_records(256, np.random.default_rng(0)))
    (root / "net.prototxt").write_text(TINY_NET.format(db=root / "train_lmdb"))
    (root / "solver.prototxt").write_text(
        TINY_SOLVER.format(net=root / "net.prototxt", prefix=root / "snap"))
    return root


def test_caffe_train_from_shell_brings_loss_down(build, tiny_solver):
    env = {**os.environ, "GLOG_minloglevel": "0"}  # the loss is logged at INFO
    out = run([build.caffe_tool, "train", "-solver", tiny_solver / "solver.prototxt"],
              cwd=tiny_solver, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    losses = [float(v) for v in re.findall(r"Iteration \d+.*, loss = ([0-9.e+-]+)", out.stderr)]
    assert len(losses) >= 3, out.stderr[-2000:]
    assert losses[0] > 0.3, f"the net started better than chance: {losses}"
    assert losses[-1] < LOSS_THRESHOLD, f"loss did not go below {LOSS_THRESHOLD}: {losses}"
    assert (tiny_solver / "snap_iter_150.caffemodel").is_file()


def test_sgd_solver_from_pycaffe_brings_loss_down(caffe, tiny_solver):
    solver = caffe.SGDSolver(str(tiny_solver / "solver.prototxt"))
    solver.step(1)
    first = float(solver.net.blobs["loss"].data)
    solver.step(149)
    last = np.mean([float(solver.net.forward()["loss"]) for _ in range(4)])
    assert first > 0.3
    assert last < LOSS_THRESHOLD, (first, last)


# -- Caffe's own gtests for the layers we rely on, and ours -----------------------------

GTEST_SUITES = [
    "ConvolutionLayerTest", "PoolingLayerTest", "InnerProductLayerTest", "NeuronLayerTest",
    "MVNLayerTest", "SliceLayerTest", "EuclideanLossLayerTest", "SoftmaxWithLossLayerTest",
    "AccuracyLayerTest", "DataLayerTest", "LocallyConnectedLayerTest", "MultiLabelDataLayerTest",
    "FastCpuPathsTest", "DirectConvTest", "WingLossLayerTest",
]
# The layers with fast CPU paths (caffe_patches/02xx-perf-*): their upstream suites run
# above with the fast paths (the default) and here once more with upstream's loops.
PATCHED_SUITES = ["ConvolutionLayerTest", "PoolingLayerTest", "NeuronLayerTest", "MVNLayerTest",
                  "InnerProductLayerTest"]


def blas_env(suite: str) -> dict:
    """Upstream's InnerProductLayerTest.TestForwardTranspose expects bit-equal outputs from
    two GEMM layouts. OpenBLAS's threaded split broke that once (14.153828 vs 14.153823), and
    oneMKL did too with one thread on a loaded machine (14.687963 vs 14.687968, CI): MKL picks
    its kernel path by the buffers' alignment and the cores' state unless its conditional
    numerical reproducibility mode is on. Measured with the upstream paths and one thread,
    two busy loops on the two cores, 100 runs each: 5 failures without MKL_CBWR, 0 with
    MKL_CBWR=AUTO,STRICT. (The layer itself is upstream's, untouched.)"""
    if suite != "InnerProductLayerTest":
        return {}
    return dict(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                MKL_CBWR="AUTO,STRICT")


@pytest.fixture(scope="module")
def gtest_list(build):
    out = run([build.gtest, "--gtest_list_tests"], cwd=build.source_dir)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("suite", GTEST_SUITES)
def test_caffe_gtests_pass_on_cpu(build, gtest_list, suite):
    assert re.search(rf"^{suite}/\d+\.", gtest_list, re.M), f"{suite} is not in the binary"
    pattern = f"{suite}/*.*LMDB*" if suite == "DataLayerTest" else f"{suite}/*"
    env = dict(os.environ, **blas_env(suite))
    check_gtest_run(run([build.gtest, f"--gtest_filter={pattern}:-*GPU*"], cwd=build.source_dir,
                        env=env))


@pytest.mark.parametrize("suite", PATCHED_SUITES)
def test_patched_layers_pass_with_upstream_paths_and_one_thread(build, suite):
    env = dict(os.environ, CAFFE_FAST_CPU="0", OMP_NUM_THREADS="1")
    env.update(blas_env(suite))
    check_gtest_run(run([build.gtest, f"--gtest_filter={suite}/*:-*GPU*"],
                        cwd=build.source_dir, env=env))


def check_gtest_run(out) -> None:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    ran = re.search(r"\[==========\] (\d+) tests? from", out.stdout)
    passed = re.search(r"\[  PASSED  \] (\d+) tests?", out.stdout)
    assert ran and passed and int(passed.group(1)) == int(ran.group(1)) > 0, out.stdout[-2000:]


# -- the build cache -------------------------------------------------------------------

def test_second_setup_reuses_the_cached_build(build):
    out = run(["bash", REPO / "tools" / "setup.sh", "--status"])
    assert out.returncode == 0, out.stderr
    assert f"Caffe: cached build {build.key}" in out.stdout, out.stdout
    assert "would" not in out.stdout, out.stdout
