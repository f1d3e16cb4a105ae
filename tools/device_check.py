#!/usr/bin/env python3
"""The GPU check: our Caffe built with CUDA, its GPU gtests, GPU-vs-CPU parity of the TCDCN
nets and a GPU training timing. Two halves (tools/device_check.sh calls them):

  prepare  (here, on a machine with the project set up; no GPU needed)
      builds Caffe with CUDA for sm_90 (the H100/H200 device machines) from the same pinned
      source, patches and layers as tools/setup.sh, without OpenCV and pycaffe (their
      libraries are not on a bare GPU machine and cannot be fetched there), into the cache
      keyed by its inputs; then packs into .device/ (git-ignored): the caffe tool, the gtest
      binary, libcaffe and every shared library they load beyond the C/C++ runtime and
      CUDA's own (found on the GPU machine), plus the nets, the released weights and a
      small LMDB written by tools/make_lmdb.py (.device/ is in .gitignore; the device
      tool carries it when asked: carry [".device"]).
  run      (on the GPU machine; standard library only, no network)
      unpacks .device/, runs the gtests of our layers and of the layers the net uses (the
      GPU-typed cases included), `caffe test` of the TCDCN nets on CPU and GPU with the same
      weights and batches (every output of every batch compared), `caffe time` and `caffe
      train` on the GPU; writes OUT/device_check.json (and the logs beside it).
      `run --cpu` does everything but the GPU parts here (the check of the check).

  tools/device_check.sh prepare
  device run: tools/device_check.sh run           (carry .device; results in $OUT)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))   # tcdcn.build and tcdcn.training.monitor: standard library only
from tcdcn.build.device import (  # noqa: E402
    ACCURACY_TOLERANCE,
    CUDA_LIBS,
    LOSS_TOLERANCE,
    SUITES,
    SYSTEM_LIBS,
    parse_test_outputs,
)
from tcdcn.paths import git_commit  # noqa: E402
from tcdcn.training.monitor import LogParser  # noqa: E402

PACK = REPO / ".device"
PARITY_NETS = {"multitask (Euclidean)": "multitask.prototxt", "finetune (Wing loss)": "wing.prototxt"}


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(map(str, cmd)), flush=True)
    return subprocess.run(list(map(str, cmd)), text=True, **kw)


# -- prepare (here) ----------------------------------------------------------------------

def prepare(args) -> int:
    info_path = REPO / ".venv" / "tcdcn-caffe-build.json"
    if not info_path.is_file():
        raise SystemExit("error: run `bash tools/setup.sh` first (it lays out nvcc too)")
    info = json.loads(info_path.read_text())
    nvcc = info.get("nvcc") or shutil.which("nvcc")
    if not nvcc:
        raise SystemExit("error: no nvcc: tools/setup.sh lays one out from PyPI "
                         "(TCDCN_CUDA_CHECK=1, the default)")
    cache = Path(os.environ.get("TCDCN_CACHE", Path.home() / ".cache" / "tcdcn-caffe"))
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    version = (re.findall(r"release [\d.]+", version) or ["?"])[-1]
    extra = f"device;sm_90;{version};gcc={subprocess.run(['gcc', '-dumpfullversion'], capture_output=True, text=True).stdout.strip()}"
    key = subprocess.run([sys.executable, REPO / "python" / "tcdcn" / "build" / "caffe_source.py", "hash", "--extra",
                          extra], capture_output=True, text=True, check=True).stdout.strip()[:16]
    build = cache / f"device-{key}"
    lt_dir = cublaslt_dir(cache, info)
    if not (build / ".complete").is_file():
        env = dict(os.environ, PATH=f"{Path(nvcc).parent}:{os.environ['PATH']}")
        launcher = ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"] if shutil.which("ccache") else []
        env.update(CCACHE_BASEDIR=str(cache), CCACHE_NOHASHDIR="1")
        t0 = time.time()
        cfg = sh(["cmake", "-S", REPO, "-B", build / "build", "-Wno-dev",
                  "-DCMAKE_BUILD_TYPE=Release", "-DTCDCN_USE_CUDA=ON",
                  "-DTCDCN_WITH_PYTHON=OFF", "-DTCDCN_WITH_OPENCV=OFF",
                  "-DCUDA_ARCH_NAME=Manual", "-DCUDA_ARCH_BIN=90", "-DCUDA_ARCH_PTX=",
                  f"-DCAFFE_DOWNLOAD_DIR={cache / 'downloads'}",
                  *([f"-DTCDCN_CUDA_EXTRA={info['cuda_extra']}"] if info.get("cuda_extra") else []),
                  # the executables link libcublas, which needs libcublasLt at link time
                  *([f"-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,{lt_dir}"] if lt_dir else []),
                  *launcher], env=env, capture_output=True)
        if cfg.returncode:
            print(cfg.stdout[-3000:], cfg.stderr[-3000:])
            raise SystemExit("error: configuring the CUDA build failed")
        jobs = str(args.jobs or os.cpu_count() or 2)
        built = sh(["cmake", "--build", build / "build", "-j", jobs, "--target", "caffe.bin",
                    "test.testbin"], env=env, capture_output=True)
        (build / "build.log").write_text(built.stdout + built.stderr)
        if built.returncode:
            print("\n".join(l for l in (built.stdout + built.stderr).splitlines()
                            if "error" in l)[-3000:])
            raise SystemExit(f"error: the CUDA build failed (log: {build / 'build.log'})")
        (build / "build.json").write_text(json.dumps(
            {"key": key, "inputs": extra, "nvcc": nvcc, "seconds": round(time.time() - t0)}) + "\n")
        (build / ".complete").touch()
    print(f"CUDA build: {build}")
    args.cublaslt = lt_dir
    pack(build / "build", key, args)
    return 0


def cublaslt_dir(cache: Path, info: dict) -> Path | None:
    """Where libcublasLt is, for a toolkit whose cuBLAS came from NVIDIA's wheel without it
    (tools/setup.sh unpacks only libcublas and libcurand for the compile-only check):
    taken from the same downloaded wheel. None when the toolkit has its own."""
    extra = info.get("cuda_extra")
    if not extra or list(Path(extra, "lib").glob("libcublasLt.so*")):
        return None
    out = cache / "cublaslt"
    if list(out.glob("libcublasLt.so.*")):
        return out
    import zipfile
    wheels = sorted((cache / "downloads" / "cuda").glob("nvidia_cublas-*.whl"))
    if not wheels:
        raise SystemExit("error: no nvidia_cublas wheel in the cache: run tools/setup.sh first")
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as z:
        for name in z.namelist():
            if re.search(r"/lib/libcublasLt\.so\.\d+$", name):
                tmp = out / (Path(name).name + ".tmp")
                with z.open(name) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                tmp.replace(out / Path(name).name)
    return out


def needed_libs(binaries: list[Path], env: dict) -> dict[str, Path]:
    """name -> path of every shared library ldd resolves for the binaries, less the ones
    the GPU machine has itself (SYSTEM_LIBS)."""
    found: dict[str, Path] = {}
    for b in binaries:
        out = subprocess.run(["ldd", str(b)], capture_output=True, text=True, env=env).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if m and m.group(2) != "not" and not SYSTEM_LIBS.match(m.group(1)):
                found[m.group(1)] = Path(m.group(2)).resolve()
            elif m and m.group(2) == "not" and not SYSTEM_LIBS.match(m.group(1)):
                raise SystemExit(f"error: {b} needs {m.group(1)}, which ldd does not find")
    return found


def pack(build: Path, key: str, args) -> None:
    caffe_bin = build / "caffe" / "tools" / "caffe"
    testbin = build / "caffe" / "test" / "test.testbin"
    if not caffe_bin.is_file() or not testbin.is_file():
        raise SystemExit(f"error: {build} lacks the caffe tool or test.testbin")
    env = dict(os.environ)
    info = json.loads((REPO / ".venv" / "tcdcn-caffe-build.json").read_text())
    local = [d for d in (info.get("cuda_extra") and f"{info['cuda_extra']}/lib",
                         args.cublaslt and str(args.cublaslt)) if d]
    # CUDA's libraries here (ldd resolves them; `run --cpu` loads them)
    env["LD_LIBRARY_PATH"] = ":".join(local + [env.get("LD_LIBRARY_PATH", "")])
    libs = needed_libs([caffe_bin, testbin], env)
    if PACK.exists():
        shutil.rmtree(PACK)
    PACK.mkdir()
    with tarfile.open(PACK / "caffe-cuda.tar.xz", "w:xz", preset=6) as tar:
        tar.add(caffe_bin, "bin/caffe")
        tar.add(testbin, "bin/test.testbin")
        for name, path in libs.items():   # libcaffe under its soname, like the rest
            tar.add(path, f"lib/{name}")
    # nets, weights and data for the parity and timing runs
    data = PACK / "data"
    data.mkdir()
    py = REPO / ".venv" / "bin" / "python"
    sh([py, REPO / "tools" / "make_lmdb.py", "--dataset", "mtfl", "--out", data / "lmdb",
        "--samples", str(args.samples), "--seed", "0",
        *(["--root", str(args.root)] if args.root else [])], check=True,
       stdout=subprocess.DEVNULL)
    shutil.rmtree(data / "lmdb" / "preview.png", ignore_errors=True)
    sh([py, "-c", NETS_SCRIPT, str(data)], check=True, cwd=REPO)
    shutil.copyfile(REPO / "models" / "tcdcn_5pt" / "tcdcn_5pt.caffemodel",
                    data / "tcdcn_5pt.caffemodel")
    size = sum(p.stat().st_size for p in PACK.rglob("*") if p.is_file())
    (PACK / "manifest.json").write_text(json.dumps(
        {"build_key": key, "libraries": sorted(libs), "bytes": size, "local_cuda_libs": local,
         "commit": git_commit(REPO, mark_dirty=False)}, indent=1) + "\n")
    print(f"packed {PACK}: {size / 2**20:.1f} MiB ({len(libs)} libraries); on the GPU machine: "
          "tools/device_check.sh run (carry .device)")


# The nets of the parity and timing runs, written by the project's own net builder.
NETS_SCRIPT = r"""
import json, sys
from dataclasses import replace
from pathlib import Path
from tcdcn.training.net import NetOptions, SolverOptions, solver, train_net
d = Path(sys.argv[1])
train, val = "data/lmdb/train_lmdb", "data/lmdb/val_lmdb"   # relative to the pack
# the released model's layout (its heads), so that every layer takes the released weights
opts = NetOptions(**json.loads(Path("models/tcdcn_5pt/model.json").read_text())["net_options"])
for name, stage, o, lr in (("multitask", "multitask", replace(opts, landmark_loss="euclidean"), 0.003),
                           ("wing", "finetune", replace(opts, landmark_loss="wing"), 0.002)):
    (d / f"{name}.prototxt").write_text(str(train_net(train, val, stage, o)))
    for suffix, iters in (("", 400), ("_cpu", 40)):   # multiples of display: the last is logged
        s = solver(f"data/{name}.prototxt", stage, f"/tmp/tcdcn_snap_{name}", test_iter=1,
                   opts=SolverOptions(base_lr=lr))
        s.max_iter, s.display, s.test_interval, s.snapshot = iters, 20, 100000, 0
        s.average_loss = 1
        (d / f"solver_{name}{suffix}.prototxt").write_text(str(s))
"""


# -- run (on the GPU machine) ------------------------------------------------------------

def find_cuda_libs() -> list[str]:
    """Folders holding CUDA's runtime, cuBLAS and cuRAND on this machine."""
    dirs: list[str] = []
    roots = [Path("/usr/local/cuda/lib64"), Path("/usr/local/cuda/targets/x86_64-linux/lib"),
             Path("/usr/lib/x86_64-linux-gnu")]
    for name in CUDA_LIBS:
        hit = next((r for r in roots if list(r.glob(name + "*"))), None)
        if hit is None:
            for base in ("/opt", "/usr/local", "/usr/lib/python3"):
                out = subprocess.run(["find", base, "-name", name + ".*", "-not", "-path",
                                      "*/stubs/*"], capture_output=True, text=True).stdout.split()
                if out:
                    hit = Path(out[0]).parent
                    break
        if hit is not None and str(hit) not in dirs:
            dirs.append(str(hit))
    return dirs


def unpack(dest: Path) -> dict:
    if (dest / ".unpacked").is_file():
        return json.loads((dest / ".unpacked").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(PACK / "caffe-cuda.tar.xz") as tar:
        tar.extractall(dest)
    shutil.copytree(PACK / "data", dest / "data", dirs_exist_ok=True)
    local = json.loads((PACK / "manifest.json").read_text()).get("local_cuda_libs", [])
    dirs = [str(dest / "lib"), *find_cuda_libs(), *[d for d in local if Path(d).is_dir()]]
    env = {"LD_LIBRARY_PATH": ":".join(dirs)}
    (dest / ".unpacked").write_text(json.dumps(env))
    return env




def gtests(dest: Path, env: dict, out: Path, gpu: bool) -> dict:
    pattern = ":".join(f"{s}/*" for s in SUITES)
    if not gpu:   # typed cases 2 and 3 of TestDtypesAndDevices are GPUDevice<float/double>;
        # a CUDA build's prefetch thread needs a CUDA driver even in CPU mode
        pattern += "-*GPU*:*/2.*:*/3.*:MultiLabelDataLayerTest*"
    report = out / "gtest.xml"   # the gtest Caffe vendors writes XML, not JSON
    r = sh([dest / "bin" / "test.testbin", f"--gtest_filter={pattern}",
            f"--gtest_output=xml:{report}"], cwd=dest, env=env, capture_output=True)
    (out / "gtest.log").write_text(r.stdout + r.stderr)
    result = {"returncode": r.returncode, "filter": pattern}
    if report.is_file():
        import xml.etree.ElementTree as ET
        cases = [t for t in ET.parse(report).getroot().iter("testcase")
                 if t.get("status") == "run"]   # filtered-out cases are listed as notrun
        name = lambda t: f"{t.get('classname')}.{t.get('name')}"
        on_gpu = [t for t in cases if "GPU" in (t.get("type_param") or "") or "GPU" in t.get("name")]
        failed = [name(t) for t in cases if t.find("failure") is not None]
        result.update(tests=len(cases), failed=failed, gpu_tests=len(on_gpu),
                      gpu_failed=[name(t) for t in on_gpu if t.find("failure") is not None],
                      suites=sorted({t.get("classname").split("/")[0] for t in cases}))
    else:
        result["error"] = "no gtest report (crashed?): see gtest.log"
    return result


def parity(dest: Path, env: dict, out: Path, gpu: bool, iterations: int, caffe: Path) -> dict:
    """`caffe test` of each net on the CPU and on the GPU (here: 1 vs all CPU threads)."""
    weights = dest / "data" / "tcdcn_5pt.caffemodel"
    results = {}
    for label, net in PARITY_NETS.items():
        runs = {}
        for mode in ("cpu", "gpu" if gpu else "cpu_1_thread"):
            e = dict(env, OMP_NUM_THREADS="1") if mode == "cpu_1_thread" else env
            r = sh([caffe, "test", "-model", f"data/{net}", "-weights", weights, "-iterations",
                    iterations, *(["-gpu", "0"] if mode == "gpu" else [])],
                   cwd=dest, env=e, capture_output=True)
            (out / f"parity_{net.split('.')[0]}_{mode}.log").write_text(r.stderr[-200000:])
            if r.returncode:
                raise RuntimeError(f"caffe test {net} ({mode}) failed: {r.stderr[-1500:]}")
            runs[mode] = parse_test_outputs(r.stderr)
        a, b = runs.values()
        worst, ok = {}, True
        for name in a:
            if name not in b or len(a[name]) != len(b[name]) or not a[name]:
                raise RuntimeError(f"{net}: output {name} differs in presence or count")
            if name.endswith("_accuracy"):   # discrete: a borderline face may flip
                worst[name] = max(abs(x - y) for x, y in zip(a[name], b[name]))
                ok &= worst[name] <= ACCURACY_TOLERANCE
            else:
                worst[name] = max(abs(x - y) / max(abs(x), 1e-6) for x, y in zip(a[name], b[name]))
                ok &= worst[name] <= LOSS_TOLERANCE
        results[label] = {"batches": iterations, "outputs": sorted(a),
                          "max_difference": worst, "passed": ok,
                          "tolerance": {"losses (relative)": LOSS_TOLERANCE,
                                        "accuracies (absolute)": ACCURACY_TOLERANCE}}
    return results


def train_timing(dest: Path, env: dict, out: Path, gpu: bool, caffe: Path) -> dict:
    results = {}
    for name in ("multitask", "wing"):
        solver = f"data/solver_{name}{'' if gpu else '_cpu'}.prototxt"
        t0 = time.time()
        r = sh([caffe, "train", "-solver", solver, "-weights", dest / "data" / "tcdcn_5pt.caffemodel",
                *(["-gpu", "0"] if gpu else [])],
               cwd=dest, env=env, capture_output=True)
        (out / f"train_{name}.log").write_text(r.stderr[-200000:])
        if r.returncode:
            raise RuntimeError(f"caffe train {name} failed: {r.stderr[-1500:]}")
        parser = LogParser()
        for line in r.stderr.splitlines():
            parser.feed(line)
        rates = [t["iters_per_s"] for t in parser.train if "iters_per_s" in t]
        losses = [t["loss"] for t in parser.train]
        if not rates or not all(math.isfinite(x) for x in losses):
            raise RuntimeError(f"caffe train {name}: no rate logged, or a non-finite loss")
        batch = int(re.search(r"batch_size: (\d+)", (dest / "data" / f"{name}.prototxt")
                              .read_text()).group(1))
        steady = rates[1:] or rates   # the first display interval includes the start-up
        results[name] = {"iterations": parser.train[-1]["iter"],
                         "batch": batch, "median_iter_per_s": statistics.median(steady),
                         "samples_per_s": statistics.median(steady) * batch,
                         "first_loss": losses[0], "last_loss": losses[-1],
                         "seconds": round(time.time() - t0, 1)}
    r = sh([caffe, "time", "-model", "data/multitask.prototxt", "-iterations", "20",
            *(["-gpu", "0"] if gpu else [])], cwd=dest, env=env, capture_output=True)
    (out / "time.log").write_text(r.stderr[-200000:])
    m = re.search(r"Average Forward-Backward: ([\d.]+) ms", r.stderr)
    results["caffe_time_forward_backward_ms"] = float(m.group(1)) if m else None
    return results


def run(args) -> int:
    out = Path(args.out or os.environ.get("OUT") or REPO / ".device" / "out")
    out.mkdir(parents=True, exist_ok=True)
    if not (PACK / "caffe-cuda.tar.xz").is_file():
        raise SystemExit(f"error: {PACK} is not packed: run `tools/device_check.sh prepare` "
                         "here and carry .device")
    dest = Path(args.work)
    gpu = not args.cpu
    report: dict = {"tool": "tools/device_check.sh", "mode": "gpu" if gpu else "cpu (dry run)",
                    "pack": json.loads((PACK / "manifest.json").read_text()),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if gpu:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True)
        report["gpu"] = smi.stdout.strip() or smi.stderr.strip()
    env = dict(os.environ)
    extra = unpack(dest)
    env["LD_LIBRARY_PATH"] = extra["LD_LIBRARY_PATH"] + ":" + env.get("LD_LIBRARY_PATH", "")
    env.setdefault("OMP_NUM_THREADS", str(min(os.cpu_count() or 1, 16)))
    report["ld_library_path"] = extra["LD_LIBRARY_PATH"]
    caffe, tool_env = dest / "bin" / "caffe", env
    if not gpu:
        # Without a CUDA driver the CUDA build cannot start its data layers' prefetch
        # threads: the nets run with this machine's CPU-only build of the same inputs.
        info = json.loads((REPO / ".venv" / "tcdcn-caffe-build.json").read_text())
        caffe, tool_env = Path(info["prefix"]) / "bin" / "caffe", dict(os.environ)
        tool_env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        report["nets_run_with"] = str(caffe)
    for step, fn in (("gtests", lambda: gtests(dest, env, out, gpu)),
                     ("parity", lambda: parity(dest, tool_env, out, gpu, args.parity_batches, caffe)),
                     ("training", lambda: train_timing(dest, tool_env, out, gpu, caffe))):
        t0 = time.time()
        try:
            report[step] = fn()
        except Exception as err:   # a failed step is a result too; the others still run
            report[step] = {"error": str(err)}
        report[step]["seconds"] = round(time.time() - t0, 1)
        (out / "device_check.json").write_text(json.dumps(report, indent=1) + "\n")
        print(f"{step}: {json.dumps(report[step])[:600]}", flush=True)
    g, p = report.get("gtests", {}), report.get("parity", {})
    ok = (g.get("returncode") == 0 and g.get("tests", 0) > 0 and not g.get("failed")
          and (g.get("gpu_tests", 0) > 0 or not gpu)
          and "error" not in p and all(v.get("passed") for k, v in p.items() if k != "seconds")
          and "error" not in report.get("training", {}))
    report["passed"] = ok
    (out / "device_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'PASSED' if ok else 'FAILED'}: {out / 'device_check.json'}")
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="build with CUDA and pack .device/ (here)")
    pp.add_argument("--jobs", type=int)
    pp.add_argument("--samples", type=int, default=4000, help="training records packed")
    pp.add_argument("--root", type=Path, help="data root for make_lmdb.py")
    rp = sub.add_parser("run", help="unpack .device/ and check (on the GPU machine)")
    rp.add_argument("--out", help="results folder (default $OUT, else .device/out)")
    rp.add_argument("--work", default="/tmp/tcdcn-device", help="where the pack is unpacked")
    rp.add_argument("--cpu", action="store_true", help="no GPU: everything but the GPU parts")
    rp.add_argument("--parity-batches", type=int, default=5)
    args = p.parse_args(argv)
    return prepare(args) if args.cmd == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
