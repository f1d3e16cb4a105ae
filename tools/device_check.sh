#!/usr/bin/env bash
# The GPU check in one prepared script (tools/device_check.py does the work):
#
#   bash tools/device_check.sh prepare     here: Caffe built with CUDA (sm_90) from the cache's
#                                          inputs, packed with its libraries, nets, weights and
#                                          a small LMDB into .device/ (git-ignored)
#   bash tools/device_check.sh run         on the GPU machine (carry .device): GPU gtests of our
#                                          layers and the net's, GPU-vs-CPU parity of the TCDCN
#                                          nets, `caffe train` timing; $OUT/device_check.json
#   bash tools/device_check.sh run --cpu   here: the same without the GPU parts
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmd="${1:-}"; shift || true
case "$cmd" in
  prepare)
    [ -x "$ROOT/.venv/bin/python" ] || bash "$ROOT/tools/setup.sh"
    exec "$ROOT/.venv/bin/python" "$ROOT/tools/device_check.py" prepare "$@" ;;
  run)
    # the GPU machine's python3 (standard library only); no network needed
    export PYTHONUNBUFFERED=1
    exec python3 "$ROOT/tools/device_check.py" run "$@" ;;
  *)
    echo "usage: bash tools/device_check.sh prepare|run [--cpu]" >&2; exit 2 ;;
esac
