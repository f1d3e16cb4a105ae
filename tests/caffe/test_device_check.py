"""tools/device_check.sh, the GPU check: the parts that run without a GPU or a CUDA build.
(The whole check runs on a GPU machine; `tools/device_check.sh run --cpu` runs it here.)"""
from __future__ import annotations

import pytest

from tests.helpers import REPO, run


@pytest.fixture(scope="module")
def dc():
    """The facts the GPU check shares with its tests (tcdcn.build.device)."""
    from tcdcn.build import device
    return device


def test_caffe_test_outputs_are_read_per_batch(dc):
    log = """I1128 08:00:00.1 caffe.cpp:281] Batch 0, landmark_loss = 0.0021
I1128 08:00:00.1 caffe.cpp:281] Batch 0, pose_accuracy = 0.85
I1128 08:00:00.2 caffe.cpp:281] Batch 1, landmark_loss = 0.0019
I1128 08:00:00.2 caffe.cpp:281] Batch 1, pose_accuracy = 0.9
I1128 08:00:00.3 caffe.cpp:286] landmark_loss = 0.002 (* 1 = 0.002 loss)
"""
    assert dc.parse_test_outputs(log) == {"landmark_loss": [0.0021, 0.0019],
                                          "pose_accuracy": [0.85, 0.9]}


def test_packed_libraries_leave_out_the_c_runtime_and_cuda(dc):
    carried = ["libglog.so.1", "libprotobuf.so.32", "libhdf5_serial.so.103", "libopenblas.so.0",
               "libgomp.so.1", "libcaffe.so.1.0.0", "liblmdb.so.0"]
    left = ["libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libcudart.so.13",
            "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "ld-linux-x86-64.so.2",
            "linux-vdso.so.1", "libpthread.so.0"]
    assert not [n for n in carried if dc.SYSTEM_LIBS.match(n)]
    assert [n for n in left if dc.SYSTEM_LIBS.match(n)] == left


def test_suites_cover_every_layer_type_of_the_nets(dc, caffe):
    """Every layer type in the TCDCN train nets (Euclidean and Wing) has its gtest suite."""
    from tcdcn.training.net import NetOptions, train_net
    types = {l.type for opts in (NetOptions(), NetOptions(landmark_loss="wing"))
             for stage in ("multitask", "finetune") for l in train_net("t", "v", stage, opts).layer}
    suite_of = {"ReLU": "NeuronLayerTest", "TanH": "NeuronLayerTest"}
    missing = [t for t in types
               if suite_of.get(t, f"{t}LayerTest") not in dc.SUITES]
    assert not missing, missing


def test_run_without_a_pack_says_what_to_do(tmp_path):
    if (REPO / ".device" / "caffe-cuda.tar.xz").is_file():
        pytest.skip("a pack exists in this checkout")
    out = run(["python3", REPO / "tools" / "device_check.py", "run", "--out", tmp_path / "o",
               "--cpu"], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
              cwd=tmp_path)
    assert out.returncode != 0 and "device_check.sh prepare" in out.stderr


def test_shell_entry_names_its_verbs():
    out = run(["bash", REPO / "tools" / "device_check.sh"])
    assert out.returncode == 2 and "prepare|run" in out.stderr
