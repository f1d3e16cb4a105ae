#!/usr/bin/env python3
"""Training speed of the TCDCN net on the CPU: samples/s, per-layer times, efficiency.

Each configuration (fast CPU paths on/off, OpenBLAS build, threads) runs in its own
process on the same generated data: the multitask train net of prototxt/ (batch 256,
MultiLabelData reading a temporary LMDB of random 40x40 faces), driven by pycaffe's
SGDSolver like `caffe train`. Per configuration it reports
- samples/s of whole solver iterations (forward, backward, update; median of --repeats
  timed runs of --iters iterations),
- per-layer forward and backward milliseconds per iteration (Net.ForwardFromTo and
  BackwardFromTo layer by layer, so layers that need no backward are skipped as in training),
- numpy's sgemm GFLOP/s measured in the same process and threads, the net's FLOP per
  training sample (3 x 2 x the multiply-adds of a forward pass), the limit in samples/s
  that the best sgemm of the run allows, and the share of it reached (efficiency),
and the ratio of each configuration to the first one (the baseline: upstream's loops).

Usage: tools/bench_train.py [--threads 2] [--paths upstream gemm fast] [--blas openblas-openmp
       openblas-pthread] [--iters 10] [--repeats 5] [--json OUT]
Switches: CAFFE_FAST_CPU=0 selects upstream's CPU loops (caffe_patches/02xx-perf-*),
CAFFE_DIRECT_CONV=0 the GEMM path for the convolutions' forward (caffe_patches/0207);
--blas preloads the chosen BLAS (an OpenBLAS build, or oneMKL's libmkl_rt) into the build
as it is; each result records which library cblas_sgemm resolved to. Numbers are printed,
never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from tcdcn.paths import write_json

ARCH = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
BLAS_DIRS = {name: f"/usr/lib/{ARCH}/{name}" for name in ("openblas-openmp", "openblas-pthread")}
BLAS_CHOICES = sorted(BLAS_DIRS) + ["mkl"]
# Any BLAS is measured on the same build by preloading it: Caffe calls only cblas_*, and a
# preloaded library's symbols come first, so the build's own BLAS (oneMKL by default,
# tools/setup.sh) is bypassed. oneMKL's single-library runtime is told to use GCC's OpenMP
# pool (the one our layers use); it comes from TCDCN_MKL or the prefix setup.sh installed.


def mkl_runtime() -> Path:
    prefix = os.environ.get("TCDCN_MKL")
    if not prefix:
        try:
            from tcdcn.build.caffe_build import build_info
            prefix = build_info().mkl_root
        except FileNotFoundError:
            prefix = None
    libs = sorted((Path(prefix) / "lib").glob("libmkl_rt.so*")) if prefix else []
    if not libs:
        sys.exit("error: --blas mkl: no libmkl_rt.so* found; set TCDCN_MKL to a prefix holding "
                 "the mkl wheel (tools/setup.sh installs tools/mkl.txt into the build cache)")
    return libs[-1]


def blas_libraries() -> dict:
    """Which BLAS Caffe's calls reach in this process: the library cblas_sgemm resolves to
    in the global scope (where libcaffe's calls go), and the BLAS libraries mapped (file
    folder/file names, no machine paths; numpy's own OpenBLAS is left out)."""
    import ctypes
    with open("/proc/self/maps") as f:
        maps = [line.split() for line in f]
    try:   # a preloaded BLAS is in the global scope, ahead of everything
        symbol = ctypes.CDLL(None).cblas_sgemm
    except AttributeError:   # else libcaffe's own dependencies (loaded RTLD_LOCAL)
        libcaffe = next(m[-1] for m in maps if Path(m[-1]).name.startswith("libcaffe.so"))
        symbol = ctypes.CDLL(libcaffe).cblas_sgemm
    address = ctypes.cast(symbol, ctypes.c_void_p).value
    resolved, mapped = None, set()
    for fields in maps:
        path = fields[-1]
        if "openblas" not in path and "libmkl_" not in path or "numpy" in path:
            continue
        short = "/".join(Path(path).parts[-2:])   # e.g. openblas-openmp/libopenblasp-...
        mapped.add(short)
        start, end = (int(v, 16) for v in fields[0].split("-"))
        if start <= address < end:
            resolved = short
    return {"cblas_sgemm_from": resolved, "mapped": sorted(mapped)}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count() or 1],
                   help="thread counts to measure (OMP_NUM_THREADS; default: all cores)")
    p.add_argument("--paths", nargs="+", choices=("upstream", "gemm", "fast"),
                   default=["upstream", "fast"],
                   help="CPU paths to measure (first: baseline): upstream's loops; the fast "
                        "paths with the convolutions' forward on the GEMM path "
                        "(CAFFE_DIRECT_CONV=0, before caffe_patches/0207); the fast paths")
    p.add_argument("--blas", nargs="+", choices=BLAS_CHOICES, default=None,
                   help="BLAS to measure: Debian's OpenBLAS builds, or oneMKL from PyPI "
                        "(preloaded; see TCDCN_MKL) (default: the one the build links)")
    p.add_argument("--no-before", dest="before", action="store_false",
                   help="leave out the first configuration, the build as it was before the "
                        "fast paths: upstream loops, pthread OpenBLAS with the kernels its "
                        "CPU detection picks here (Prescott on CPUs it does not recognise)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--iters", type=int, default=10, help="solver iterations per timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (median)")
    p.add_argument("--layer-repeats", type=int, default=5, help="per-layer timing passes")
    p.add_argument("--json", type=Path, help="write the numbers here too")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: one config
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------
# One configuration (runs in a child process with its environment set)
# ---------------------------------------------------------------------------------------

def make_lmdb(folder: Path, records: int, seed: int = 0) -> None:
    import numpy as np
    from tcdcn.data.lmdb_io import encode_datum, write_lmdb
    from tcdcn.schemes import SCHEMES, TASKS
    rng = np.random.default_rng(seed)
    k = SCHEMES["5pt"].count

    def gen():
        for _ in range(records):
            image = rng.integers(0, 256, size=(1, 40, 40), dtype=np.uint8)
            labels = np.concatenate([rng.uniform(0.2, 0.8, 2 * k),
                                     [rng.integers(len(t.classes)) for t in TASKS]])
            yield encode_datum(image, labels.astype(np.float32))
    write_lmdb(folder, gen())


def forward_macs(net) -> dict[str, int]:
    """Multiply-adds per sample of each layer with weights: outputs per sample x the inputs
    each output reads (one row of the weight blob: channels x kh x kw, or fan-in)."""
    macs = {}
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type in ("Convolution", "LocallyConnected", "InnerProduct") and layer.blobs:
            out = net.blobs[net.top_names[name][0]].data[0].size
            macs[name] = int(out * layer.blobs[0].data[0].size)
    return macs


def sgemm_gflops(threads: int, n: int = 1536, repeats: int = 5) -> float:
    import numpy as np
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def worker(args) -> dict:
    import caffe
    from tcdcn.training.net import NetOptions, SolverOptions, solver, train_net
    caffe.set_mode_cpu()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_lmdb(tmp / "train", records=max(4 * args.batch, 2048))
        make_lmdb(tmp / "val", records=100, seed=1)
        net_path = tmp / "train_val.prototxt"
        net_path.write_text(str(train_net(str(tmp / "train"), str(tmp / "val"), "multitask",
                                          NetOptions(), batch=args.batch)))
        solver_path = tmp / "solver.prototxt"
        solver_path.write_text(str(solver(str(net_path), "multitask", str(tmp / "snap"),
                                          test_iter=1,
                                          opts=SolverOptions(batch=args.batch, base_lr=0.003,
                                                             test_interval=10 ** 8,
                                                             max_iter=10 ** 8))))
        s = caffe.SGDSolver(str(solver_path))
        s.step(3)  # warm-up: allocations, prefetch, BLAS threads
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            s.step(args.iters)
            runs.append((time.perf_counter() - t) / args.iters)
        net = s.net
        names = list(net._layer_names)
        fwd = {n: [] for n in names}
        bwd = {n: [] for n in names}
        for _ in range(args.layer_repeats):
            for i, n in enumerate(names):
                t = time.perf_counter()
                net._forward(i, i)
                fwd[n].append(time.perf_counter() - t)
            for i in reversed(range(len(names))):
                t = time.perf_counter()
                net._backward(i, i)
                bwd[names[i]].append(time.perf_counter() - t)
        macs = forward_macs(net)
        types = {n: l.type for n, l in zip(names, net.layers)}
    per_iter = statistics.median(runs)
    gflops = sgemm_gflops(threads)
    flop_per_sample = 6 * sum(macs.values())
    limit = gflops * 1e9 / flop_per_sample
    samples_s = args.batch / per_iter
    return {
        "threads": threads, "fast_cpu": os.environ.get("CAFFE_FAST_CPU", "1") != "0",
        "direct_conv": os.environ.get("CAFFE_DIRECT_CONV", "1") != "0",
        "blas": os.environ.get("TCDCN_BENCH_BLAS", "linked"), "batch": args.batch,
        "blas_libraries": blas_libraries(),
        "ms_per_iter": per_iter * 1e3, "ms_per_iter_runs": [r * 1e3 for r in runs],
        "samples_per_s": samples_s, "sgemm_gflops": gflops,
        "forward_macs_per_sample": sum(macs.values()), "flop_per_sample": flop_per_sample,
        "limit_samples_per_s": limit, "efficiency": samples_s / limit,
        "layers": [{"name": n, "type": types[n],
                    "forward_ms": statistics.median(fwd[n]) * 1e3,
                    "backward_ms": statistics.median(bwd[n]) * 1e3} for n in names],
    }


# ---------------------------------------------------------------------------------------
# The orchestrator
# ---------------------------------------------------------------------------------------

def detected_coretype() -> str:
    """The kernels OpenBLAS's own detection picks on this CPU (no OPENBLAS_CORETYPE)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["OPENBLAS_VERBOSE"] = "2"
    lib = Path(BLAS_DIRS["openblas-pthread"]) / "libopenblas.so.0"
    out = subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(lib)!r})"],
                         env=env, capture_output=True, text=True)
    cores = [l.split(":", 1)[1].strip() for l in (out.stdout + out.stderr).splitlines()
             if l.startswith("Core:")]
    return cores[-1] if cores else "unknown"


def run_config(args, paths: str, blas: str | None, threads: int,
               coretype: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               CAFFE_FAST_CPU="0" if paths == "upstream" else "1",
               CAFFE_DIRECT_CONV="0" if paths == "gemm" else "1", GLOG_minloglevel="2")
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    if blas == "mkl":
        env.update(LD_PRELOAD=str(mkl_runtime()), MKL_THREADING_LAYER="GNU",
                   MKL_INTERFACE_LAYER="LP64", MKL_NUM_THREADS=str(threads),
                   TCDCN_BENCH_BLAS="mkl")
    elif blas:
        env.update(LD_PRELOAD=str(Path(BLAS_DIRS[blas]) / "libopenblas.so.0"),
                   TCDCN_BENCH_BLAS=blas)
        if not coretype:
            # A preloaded OpenBLAS picks its kernels as it loads, before pycaffe could choose
            # them (caffe_patches/0205): let pycaffe's chooser set the variable here first.
            import caffe  # noqa: F401  (its __init__ sets OPENBLAS_CORETYPE from the CPU flags)
            if os.environ.get("OPENBLAS_CORETYPE"):
                env["OPENBLAS_CORETYPE"] = os.environ["OPENBLAS_CORETYPE"]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, __file__, "--worker", str(out), "--batch", str(args.batch),
           "--iters", str(args.iters), "--repeats", str(args.repeats),
           "--layer-repeats", str(args.layer_repeats)]
    try:
        subprocess.run(cmd, env=env, check=True)
        result = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    result["paths"] = paths
    result["openblas_coretype"] = coretype or "chosen by pycaffe (caffe_patches/0205)"
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        args.worker.write_text(json.dumps(worker(args)))
        return 0
    configs = [(p, b, t, None) for t in args.threads for b in (args.blas or [None])
               for p in args.paths]
    if args.before:
        core = detected_coretype()
        configs.insert(0, ("upstream", "openblas-pthread", max(args.threads), core))
    results = []
    for i, (p, b, t, core) in enumerate(configs):
        label = (f"{p} paths, {b or 'linked BLAS'}, {t} thread{'s' if t > 1 else ''}"
                 + (f", {core} kernels (before)" if core else ""))
        print(f"[{i + 1}/{len(configs)}] {label} ...", flush=True)
        r = run_config(args, p, b, t, core)
        r["label"] = label
        results.append(r)
    # The machine's limit: the best sgemm measured (a configuration forced to slow kernels
    # measures its own slow sgemm, which would flatter it).
    machine = max(r["sgemm_gflops"] for r in results)
    for r in results:
        r["limit_samples_per_s"] = machine * 1e9 / r["flop_per_sample"]
        r["efficiency"] = r["samples_per_s"] / r["limit_samples_per_s"]
    base = results[0]
    print(f"\nTCDCN multitask train net, batch {args.batch}, "
          f"{base['flop_per_sample'] / 1e6:.1f} MFLOP per training sample "
          f"({base['forward_macs_per_sample'] / 1e6:.2f} M multiply-adds forward, x2 x3)\n")
    print(f"{'configuration':66s} {'ms/iter':>8s} {'samples/s':>10s} {'vs base':>8s} "
          f"{'sgemm GF/s':>10s} {'limit/s':>8s} {'effic.':>7s}")
    for r in results:
        r["ratio_to_baseline"] = base["ms_per_iter"] / r["ms_per_iter"]
        print(f"{r['label']:66s} {r['ms_per_iter']:8.1f} {r['samples_per_s']:10.0f} "
              f"{r['ratio_to_baseline']:7.2f}x {r['sgemm_gflops']:10.1f} "
              f"{r['limit_samples_per_s']:8.0f} {100 * r['efficiency']:6.1f}%")
    best = max(results, key=lambda r: r["samples_per_s"])
    print(f"\nper layer, ms per iteration (forward / backward): {base['label']} -> {best['label']}")
    for lb, lf in zip(base["layers"], best["layers"]):
        if max(lb["forward_ms"], lb["backward_ms"], lf["forward_ms"], lf["backward_ms"]) < 0.05:
            continue
        print(f"  {lb['name']:18s} {lb['type']:18s} {lb['forward_ms']:7.2f} / {lb['backward_ms']:6.2f}"
              f"  ->  {lf['forward_ms']:7.2f} / {lf['backward_ms']:6.2f}")
    report = {"tool": "tools/bench_train.py", "argv": argv if argv is not None else sys.argv[1:],
              "cpu_count": os.cpu_count(), "baseline": base["label"], "best": best["label"],
              "results": results}
    if args.json:
        write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
