#!/usr/bin/env bash
# Sets up everything `make test` and `make demo` need, and nothing twice:
#   1. the Debian packages (installed when root, else the exact apt-get line is printed),
#   2. the virtual environment .venv/ with the pinned requirements,
#   3. the patched Caffe build, kept outside the checkout in $TCDCN_CACHE and keyed by a
#      hash of everything that affects it (pin, patches, layers, options, toolchain),
#   4. pycaffe and the `caffe` tool linked into .venv/, and the project package installed.
#
# Environment: TCDCN_CACHE (default ~/.cache/tcdcn-caffe), TCDCN_CUDA=ON for a CUDA build,
# TCDCN_BLAS=mkl (default: oneMKL from PyPI, tools/mkl.txt, installed into the cache),
# openblas-openmp or openblas-pthread (Debian's), TCDCN_NVCC=pypi to take nvcc
# for the compile-only CUDA check from NVIDIA's PyPI wheels even where one is installed
# (without one it always does), TCDCN_CUDA_CHECK=0 to skip that check's preparation,
# TCDCN_CAFFE_TARBALL or TCDCN_CAFFE_SOURCE to build from your own Caffe tarball/checkout,
# JOBS (default: all cores).
# Usage: tools/setup.sh [--status]   (--status: say what would be done, change nothing)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
CACHE="${TCDCN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcdcn-caffe}"
CUDA="${TCDCN_CUDA:-OFF}"
# oneMKL by default: about 1.2x OpenBLAS's training rate and batch-256 inference here
# (benchmarks/bench_train_mkl.json, README's speed section); openblas-openmp / -pthread stay
# selectable (and are what tools/device_check.sh's CUDA build links: CMakeLists' default)
BLAS="${TCDCN_BLAS:-mkl}"
JOBS="${JOBS:-$(nproc)}"
SYSTEM_PYTHON=/usr/bin/python3   # Debian's: boost-python is built for it
STATUS_ONLY=0
[ "${1:-}" = "--status" ] && STATUS_ONLY=1

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# ---- 1. Debian packages --------------------------------------------------------------
mapfile -t packages < <(grep -v '^\s*\(#\|$\)' "$ROOT/tools/debian-packages.txt")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  line="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ $STATUS_ONLY = 1 ]; then
    say "would install Debian packages: ${missing[*]}"
  elif [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    $line -qq
  else
    printf 'Missing Debian packages. Run this as root, then run the command again:\n  sudo %s\n' "$line" >&2
    exit 1
  fi
fi

# ---- 2. Virtual environment ------------------------------------------------------------
req_hash=$(sha256sum "$ROOT/requirements.txt" | cut -c1-16)
if [ "$(cat "$VENV/.requirements-hash" 2>/dev/null)" != "$req_hash" ]; then
  if [ $STATUS_ONLY = 1 ]; then
    say "would create/update $VENV from requirements.txt"
    exit 0
  fi
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$SYSTEM_PYTHON" -m venv "$VENV"; }
  say "installing pinned Python packages"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    -r "$ROOT/requirements.txt"
  echo "$req_hash" > "$VENV/.requirements-hash"
fi
PY="$VENV/bin/python"

# ---- 3. Caffe build, cached by input hash -------------------------------------------------
# pins_sha FILE: a package list's pins without their hashes (tools/lock_requirements.py
# adds those): the same packages keep the same cache key
pins_sha() { grep -v -- '--hash=sha256:' "$1" | sed 's/ \\$//' | sha256sum | cut -c1-12; }
# unpack_wheels REQUIREMENTS DEST WHAT [--toolkit]: NVIDIA's wheels from PyPI, unpacked
# into the cache once (tools/unpack_cuda_extra.py); nothing goes into the environment.
unpack_wheels() {
  local reqs="$1" dest="$2" what="$3"; shift 3
  [ -f "$dest/.complete" ] && return 0
  if [ $STATUS_ONLY = 1 ]; then say "would unpack $what into $dest"; return 0; fi
  say "unpacking $what for the compile-only CUDA check into $dest"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes -r "$reqs" \
    -d "$CACHE/downloads/cuda"
  "$PY" "$ROOT/tools/unpack_cuda_extra.py" "$@" "$reqs" "$CACHE/downloads/cuda" "$dest"
}
# nvcc for the compile-only CUDA check: the machine's, else (or with TCDCN_NVCC=pypi) a
# CUDA root laid out in the cache from NVIDIA's wheels on PyPI (tools/cuda-toolkit.txt).
NVCC=""
if [ "${TCDCN_CUDA_CHECK:-1}" = 1 ]; then
  if [ "${TCDCN_NVCC:-}" != pypi ] && command -v nvcc >/dev/null; then
    NVCC=$(command -v nvcc)
  else
    TOOLKIT="$CACHE/cuda-toolkit-$(pins_sha "$ROOT/tools/cuda-toolkit.txt")"
    unpack_wheels "$ROOT/tools/cuda-toolkit.txt" "$TOOLKIT" "nvcc from PyPI" --toolkit
    if [ -x "$TOOLKIT/bin/nvcc" ]; then NVCC="$TOOLKIT/bin/nvcc"; fi
  fi
fi
# cuBLAS/cuRAND headers for the compile-only CUDA check, where nvcc comes without them.
CUDA_EXTRA=""
if [ -n "$NVCC" ]; then
  CUDA_EXTRA="$CACHE/cuda-extra-$(pins_sha "$ROOT/tools/cuda-extra.txt")"
  unpack_wheels "$ROOT/tools/cuda-extra.txt" "$CUDA_EXTRA" "cuBLAS/cuRAND headers"
fi


# TCDCN_BLAS=mkl: oneMKL's wheels (tools/mkl.txt) in a venv of their own in the cache
MKL_ROOT=""
if [ "$BLAS" = mkl ]; then
  MKL_ROOT="$CACHE/mkl-$(pins_sha "$ROOT/tools/mkl.txt")"
  if [ ! -f "$MKL_ROOT/.complete" ]; then
    if [ $STATUS_ONLY = 1 ]; then
      say "would install oneMKL (tools/mkl.txt) into $MKL_ROOT"
      exit 0
    fi
    say "installing oneMKL (tools/mkl.txt, about 1 GB) into $MKL_ROOT"
    rm -rf "$MKL_ROOT"
    "$SYSTEM_PYTHON" -m venv "$MKL_ROOT"
    "$MKL_ROOT/bin/pip" install --quiet --no-deps --require-hashes -r "$ROOT/tools/mkl.txt" \
      || die "pip could not install tools/mkl.txt into $MKL_ROOT"
    touch "$MKL_ROOT/.complete"
  fi
fi

toolchain="cuda=$CUDA;blas=$BLAS"
[ -n "$MKL_ROOT" ] && toolchain+=";mkl=$(pins_sha "$ROOT/tools/mkl.txt")"
toolchain+=";python=$("$PY" -c 'import sys; print(sys.version.split()[0])')"
toolchain+=";numpy=$("$PY" -c 'import numpy; print(numpy.__version__)')"
toolchain+=";protoc=$(protoc --version);gcc=$(gcc -dumpfullversion)"
cmake_args=(-DTCDCN_USE_CUDA="$CUDA" -DTCDCN_BLAS="$BLAS" -DTCDCN_MKL_ROOT="$MKL_ROOT")
if [ -n "${TCDCN_CAFFE_SOURCE:-}" ]; then
  cmake_args+=(-DCAFFE_SOURCE="$(realpath "$TCDCN_CAFFE_SOURCE")")
  toolchain+=";source=$(realpath "$TCDCN_CAFFE_SOURCE")"
elif [ -n "${TCDCN_CAFFE_TARBALL:-}" ]; then
  cmake_args+=(-DCAFFE_TARBALL="$(realpath "$TCDCN_CAFFE_TARBALL")")
  toolchain+=";tarball=$(sha256sum "$TCDCN_CAFFE_TARBALL" | cut -d' ' -f1)"
fi
key=$("$SYSTEM_PYTHON" "$ROOT/python/tcdcn/build/caffe_source.py" hash --extra "$toolchain" | cut -c1-16)
BUILD="$CACHE/build-$key"
PREFIX="$BUILD/install"

if [ -f "$PREFIX/.complete" ]; then
  say "Caffe: cached build $key ($BUILD)"
elif [ $STATUS_ONLY = 1 ]; then
  say "Caffe: would build $key into $BUILD"
  exit 0
else
  say "Caffe: building $key into $BUILD with $JOBS jobs (about 3-4 minutes on 2 cores)"
  start=$(date +%s)
  mkdir -p "$BUILD"
  launcher=()
  if command -v ccache >/dev/null; then
    # Paths relative to the cache, so that a build under a new key reuses the objects of
    # every source file that did not change.
    export CCACHE_BASEDIR="$CACHE" CCACHE_NOHASHDIR=1
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S "$ROOT" -B "$BUILD/build" -Wno-dev -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" -DPYTHON_EXECUTABLE="$PY" \
    -DCAFFE_DOWNLOAD_DIR="$CACHE/downloads" "${launcher[@]}" "${cmake_args[@]}" \
    > "$BUILD/configure.log" 2>&1 || { tail -40 "$BUILD/configure.log"; die "configure failed (log: $BUILD/configure.log)"; }
  cmake --build "$BUILD/build" -j "$JOBS" > "$BUILD/build.log" 2>&1 \
    || { grep -E -A8 -m5 "error:|undefined reference" "$BUILD/build.log" | head -60; die "build failed (log: $BUILD/build.log)"; }
  cmake --install "$BUILD/build" > "$BUILD/install.log" 2>&1 || die "install failed (log: $BUILD/install.log)"
  seconds=$(( $(date +%s) - start ))
  printf '{"key": "%s", "seconds": %d, "jobs": %d, "cores": %d, "inputs": "%s"}\n' \
    "$key" "$seconds" "$JOBS" "$(nproc)" "$toolchain" > "$PREFIX/build.json"
  touch "$PREFIX/.complete"
  say "Caffe: built in ${seconds}s"
  # keep the three most recent builds
  ls -1dt "$CACHE"/build-*/ 2>/dev/null | tail -n +4 | while read -r old; do
    rm -rf "$old"; done
fi

# ---- 4. Link the build into the environment, install the project package ------------------
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PREFIX/python" > "$site/tcdcn_caffe_build.pth"   # pycaffe
# The caffe tool, through a wrapper that picks OpenBLAS's kernels like pycaffe does
# (caffe_patches/0205): Debian's OpenBLAS 0.3.21 runs its slowest kernels on CPUs it does
# not recognise. OPENBLAS_CORETYPE set by the user wins.
rm -f "$VENV/bin/caffe"
cat > "$VENV/bin/caffe" <<WRAPPER
#!/bin/sh
if [ -z "\${OPENBLAS_CORETYPE:-}" ]; then
  flags=" \$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  has() { for f in "\$@"; do case "\$flags" in *" \$f "*) ;; *) return 1 ;; esac; done; }
  if has avx512f avx512bw avx512vl avx512dq; then export OPENBLAS_CORETYPE=SkylakeX
  elif has avx2 fma; then export OPENBLAS_CORETYPE=Haswell; fi
fi
exec "$PREFIX/bin/caffe" "\$@"
WRAPPER
chmod +x "$VENV/bin/caffe"
cat > "$VENV/tcdcn-caffe-build.json" <<EOF
{"key": "$key", "prefix": "$PREFIX", "build_dir": "$BUILD/build",
 "source_dir": "$BUILD/build/caffe-src", "gtest": "$BUILD/build/caffe/test/test.testbin",
 "cuda": "$CUDA", "cuda_extra": "$CUDA_EXTRA", "nvcc": "$NVCC",
 "download_dir": "$CACHE/downloads", "blas": "$BLAS", "mkl_root": "$MKL_ROOT"}
EOF
# The project's package (python/tcdcn), installed as a path entry, like an editable install.
echo "$ROOT/python" > "$site/tcdcn.pth"
say "ready: $VENV (caffe $key)"
