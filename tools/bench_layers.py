#!/usr/bin/env python3
"""Benchmarks of the new layers (numbers printed, never asserted).

1. LocallyConnected vs Convolution forward+backward at TCDCN's conv4 shape
   (input 64x3x3, kernel 2, 80 outputs, batch 256): median of several timed runs,
   the two interleaved in one process, and their ratio.
2. MultiLabelData: records/s read from an LMDB of 40x40 grey faces with 14 labels,
   against the samples/s a the TCDCN net trains at (forward+backward).

Usage: tools/bench_layers.py [--threads N] [--repeats R] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="OpenBLAS threads (default 1)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per measurement")
    p.add_argument("--iters", type=int, default=20, help="forward+backward passes per run")
    p.add_argument("--records", type=int, default=20000, help="records in the LMDB benchmark")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    return p.parse_args(argv)


def conv4_net(caffe, kind: str, batch: int):
    from caffe import layers as L
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[batch, 64, 3, 3]))
    params = dict(num_output=80, kernel_size=2, weight_filler=dict(type="xavier"))
    n.y = getattr(L, kind)(n.x, **params)
    proto = n.to_proto()
    proto.force_backward = True
    return proto


def load(caffe, proto, phase):
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(str(proto))
    try:
        return caffe.Net(f.name, phase)
    finally:
        os.unlink(f.name)


def time_fwd_bwd(net, top: str, iters: int) -> float:
    """Seconds per forward+backward pass, averaged over `iters` passes."""
    net.blobs[top].diff[...] = 1.0
    start = time.perf_counter()
    for _ in range(iters):
        net.forward()
        net.backward()
    return (time.perf_counter() - start) / iters


def bench_conv4(caffe, np, repeats: int, iters: int) -> dict:
    nets = {kind: load(caffe, conv4_net(caffe, kind, 256), caffe.TRAIN)
            for kind in ("Convolution", "LocallyConnected")}
    x = np.random.default_rng(0).standard_normal((256, 64, 3, 3)).astype(np.float32)
    times = {kind: [] for kind in nets}
    for net in nets.values():
        net.blobs["x"].data[...] = x
        time_fwd_bwd(net, "y", 3)  # warm-up
    for _ in range(repeats):  # interleaved, so drift hits both alike
        for kind, net in nets.items():
            times[kind].append(time_fwd_bwd(net, "y", iters))
    med = {kind: statistics.median(t) for kind, t in times.items()}
    return {
        "shape": "batch 256, input 64x3x3, kernel 2, 80 outputs",
        "convolution_ms": med["Convolution"] * 1e3,
        "locally_connected_ms": med["LocallyConnected"] * 1e3,
        "ratio_lc_over_conv": med["LocallyConnected"] / med["Convolution"],
        "runs_ms": {k: [round(v * 1e3, 3) for v in t] for k, t in times.items()},
    }


def bench_data(caffe, np, records: int, repeats: int) -> dict:
    from tcdcn.data.lmdb_io import encode_datum, write_lmdb
    batch = 256
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        source = str(Path(tmp) / "db")
        labels = np.zeros(14, np.float32)   # 10 coordinates, then 4 class ids
        write_lmdb(source, (encode_datum(rng.integers(0, 256, (1, 40, 40), dtype=np.uint8),
                                         labels) for _ in range(records)))
        reader = caffe.NetSpec()
        from caffe import layers as L
        reader.data, reader.label = L.MultiLabelData(source=source, batch_size=batch, ntop=2)
        read_net = load(caffe, reader.to_proto(), caffe.TRAIN)
        steps = max(1, records // batch)
        read_rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                read_net.forward()
            read_rates.append(steps * batch / (time.perf_counter() - start))

        # the released net's own train/val definition (tcdcn/training/net.py), reading the same LMDB
        from tcdcn.training.net import train_net as tcdcn_train_net
        train_net = load(caffe, tcdcn_train_net(source, source, "multitask", batch=batch),
                         caffe.TRAIN)
        train_net.forward()
        train_net.backward()
        train_rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(3):
                train_net.forward()
                train_net.backward()
            train_rates.append(3 * batch / (time.perf_counter() - start))
    read, train = statistics.median(read_rates), statistics.median(train_rates)
    return {"records_per_s": read, "net_samples_per_s": train,
            "read_over_train": read / train, "batch": batch, "records": records}


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    import numpy as np
    caffe.set_mode_cpu()

    conv4 = bench_conv4(caffe, np, args.repeats, args.iters)
    print(f"conv4 forward+backward ({conv4['shape']}), OpenBLAS threads {args.threads}, "
          f"median of {args.repeats} runs x {args.iters} passes:")
    print(f"  Convolution       {conv4['convolution_ms']:8.3f} ms")
    print(f"  LocallyConnected  {conv4['locally_connected_ms']:8.3f} ms")
    print(f"  ratio LC / Conv   {conv4['ratio_lc_over_conv']:8.3f}  (goal <= 1.5)")

    data = bench_data(caffe, np, args.records, args.repeats)
    print(f"MultiLabelData: {data['records_per_s']:,.0f} records/s read (40x40x1, 14 labels, "
          f"batch {data['batch']}); the TCDCN net trains at "
          f"{data['net_samples_per_s']:,.0f} samples/s; ratio {data['read_over_train']:.1f}")

    result = {"threads": args.threads, "repeats": args.repeats, "conv4": conv4,
              "multilabel_data": data}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
