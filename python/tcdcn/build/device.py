"""What the GPU check (tools/device_check.py) and its tests share: the gtest suites it runs,
the libraries it carries or leaves to the machine, its tolerances, and how it reads
`caffe test` output. Standard library only."""
from __future__ import annotations

import re

# The gtest suites: ours, and upstream's for every layer type the TCDCN nets use.
SUITES = ["LocallyConnectedLayerTest", "WingLossLayerTest", "MultiLabelDataLayerTest",
          "FastCpuPathsTest", "ConvolutionLayerTest", "PoolingLayerTest",
          "InnerProductLayerTest", "NeuronLayerTest", "MVNLayerTest", "SliceLayerTest",
          "EuclideanLossLayerTest", "SoftmaxWithLossLayerTest", "AccuracyLayerTest"]


# Libraries the GPU machine provides itself: the C/C++ runtime and CUDA's.
SYSTEM_LIBS = re.compile(r"^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\."
                         r"|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcurand"
                         r"|libnvidia)")


CUDA_LIBS = ("libcudart.so", "libcublas.so", "libcublasLt.so", "libcurand.so")


LOSS_TOLERANCE = 1e-3       # relative, per batch


ACCURACY_TOLERANCE = 0.02   # absolute, per batch of 100: two faces


def parse_test_outputs(log: str) -> dict[str, list[float]]:
    """`caffe test`'s per-batch outputs: name -> values in batch order."""
    out: dict[str, list[float]] = {}
    for m in re.finditer(r"Batch \d+, (\S+) = (\S+)", log):
        out.setdefault(m.group(1), []).append(float(m.group(2)))
    return out
