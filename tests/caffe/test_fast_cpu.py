"""The fast CPU paths (caffe_patches/02xx-perf-*) against upstream's loops on the whole TCDCN
net: the same outputs and gradients for one batch, and the same 50-iteration loss curve.

Each path runs in its own process (CAFFE_FAST_CPU is read once per process); the layer-level
comparisons with odd shapes are the FastCpuPathsTest gtests (test_build.py)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from tests.helpers import REPO, run

pytestmark = pytest.mark.caffe

WORKER = r"""
import json, sys
import numpy as np
import caffe
from tcdcn.data.lmdb_io import encode_datum, write_lmdb
from tcdcn.training.net import NetOptions, SolverOptions, solver, train_net
from pathlib import Path

tmp, iters, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
caffe.set_mode_cpu()
if not (tmp / "train").exists():
    rng = np.random.default_rng(0)
    def records(n):
        for i in range(n):
            image = rng.integers(0, 256, size=(1, 40, 40), dtype=np.uint8)
            # a learnable target: the mean brightness of the four quadrants, plus classes
            q = image[0].reshape(2, 20, 2, 20).mean(axis=(1, 3)).ravel() / 255.0
            labels = np.concatenate([np.repeat(q, 3)[:10], [i % 2, (i // 2) % 2, i % 2, i % 5]])
            yield encode_datum(image, labels.astype(np.float32))
    write_lmdb(tmp / "train", records(4 * batch))
    write_lmdb(tmp / "val", records(batch))
net_path = tmp / "net.prototxt"
net_path.write_text(str(train_net(str(tmp / "train"), str(tmp / "val"), "multitask",
                                  NetOptions(), batch=batch)))
solver_path = tmp / "solver.prototxt"
solver_path.write_text(str(solver(str(net_path), "multitask", str(tmp / "snap"), test_iter=1,
                                  opts=SolverOptions(batch=batch, base_lr=0.01,
                                                     test_interval=10 ** 6, max_iter=10 ** 6))))
s = caffe.SGDSolver(str(solver_path))
net = s.net
net.forward()
net.backward()
out = {"blobs": {k: net.blobs[k].data.ravel()[:4096].tolist() for k in
                 ("norm", "conv1", "pool1", "conv2", "conv3", "conv4", "fc5", "landmarks_tanh")},
       "grads": {k: net.params[k][0].diff.ravel()[:4096].tolist() for k in
                 ("conv1", "conv2", "conv3", "conv4", "fc5", "fc_landmarks")}}
s2 = caffe.SGDSolver(str(solver_path))
losses = []
for _ in range(iters):
    s2.step(1)
    losses.append(float(s2.net.blobs["landmark_loss"].data))
out["losses"] = losses
print("RESULT " + json.dumps(out))
"""


def run_path(tmp_path, fast: bool, threads: int, iters: int = 50, batch: int = 64) -> dict:
    env = dict(os.environ, CAFFE_FAST_CPU="1" if fast else "0", OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), GLOG_minloglevel="2",
               PYTHONPATH=str(REPO / "python"))
    out = run([sys.executable, "-c", WORKER, tmp_path, iters, batch], env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fastcpu")
    return tmp, run_path(tmp, fast=False, threads=1)


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_net_outputs_gradients_and_loss_curve_match_upstream(upstream, threads):
    tmp, ref = upstream
    got = run_path(tmp, fast=True, threads=threads)
    for kind in ("blobs", "grads"):
        for name, values in ref[kind].items():
            a, b = np.array(values), np.array(got[kind][name])
            scale = max(np.abs(a).max(), 1e-12)
            assert np.abs(a - b).max() <= 1e-4 * scale, (kind, name, np.abs(a - b).max(), scale)
    # the switch is real: the convolutions' weight gradients are summed in another order
    assert any(ref["grads"][k] != got["grads"][k] for k in ("conv1", "conv2", "conv3")), \
        "CAFFE_FAST_CPU made no difference: did the fast path run?"
    ref_loss, loss = np.array(ref["losses"]), np.array(got["losses"])
    assert ref_loss[-10:].mean() < 0.8 * ref_loss[:5].mean(), "the reference run did not learn"
    # float rounding differs (GEMM blocking, thread sums) and grows over 50 SGD steps: the
    # first steps agree to a part in ten thousand; late losses (0.02-0.04) move by a few parts
    # in a thousand with OpenBLAS and up to 2% with oneMKL, whose kernels for the fast path's
    # chunked GEMMs (one per chunk of images, not per image) round differently at 2 threads.
    # A wrong gradient moves the curve by far more (tens of percent within a few steps).
    np.testing.assert_allclose(loss[:5], ref_loss[:5], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss, ref_loss, rtol=3e-2, atol=1e-4)


def test_pycaffe_switches_the_direct_convolution_in_one_process(model_dir):
    """caffe._caffe.set_direct_conv_enabled (patch 0208) switches the convolutions' forward
    between the direct kernel and the GEMM path at run time, as tools/bench_inference.py
    does: the two round differently, within 1e-5, and switching back gives the first
    outputs to the bit."""
    import caffe
    from tcdcn.landmarks import LandmarkModel
    net = LandmarkModel(model_dir, batch=2, backend="caffe").net
    net.blobs["data"].data[...] = np.random.default_rng(0).integers(0, 256, (2, 1, 40, 40))
    assert caffe._caffe.direct_conv_enabled() and caffe._caffe.fast_cpu_enabled()
    try:
        direct = {k: v.copy() for k, v in net.forward().items()}
        caffe._caffe.set_direct_conv_enabled(False)
        assert not caffe._caffe.direct_conv_enabled()
        gemm = {k: v.copy() for k, v in net.forward().items()}
    finally:
        caffe._caffe.set_direct_conv_enabled(True)
    again = net.forward()
    assert any(not np.array_equal(direct[k], gemm[k]) for k in direct)
    for k in direct:
        np.testing.assert_allclose(direct[k], gemm[k], atol=1e-5)
        np.testing.assert_array_equal(direct[k], again[k])
