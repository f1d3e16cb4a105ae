#!/usr/bin/env bash
# Builds the CI image from the Dockerfile and runs `make test` inside it, with the shared
# data mounted read-only; prints the build time, the image size and the tests' result.
#
#   tools/build_image.sh [--tag tcdcn:test] [--shared DIR] [--engine podman|docker] [--no-test]
#
# With Docker (where a user has it) `FROM debian:12` pulls as usual. Without Docker, on a
# Debian 12 machine with only Debian's packages and its configured mirrors (no container
# registry), it uses podman (apt-get installs podman runc mmdebstrap uidmap fuse-overlayfs
# slirp4netns when run as root), and makes the base image itself: `mmdebstrap
# --variant=minbase bookworm` from the host's apt sources, imported as debian:12. podman
# runs with runc (crun fails on hybrid cgroups) and explicit ulimits (no CAP_SYS_RESOURCE
# in some VMs). The build reaches PyPI and Debian through the host's network, CA
# certificates and pip configuration, bind-mounted read-only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=tcdcn:test
SHARED="$ROOT/../shared"
ENGINE=""
TEST=1
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="$2"; shift 2 ;;
    --shared) SHARED="$2"; shift 2 ;;
    --engine) ENGINE="$2"; shift 2 ;;
    --no-test) TEST=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
say() { printf '[image] %s\n' "$*"; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

if [ -z "$ENGINE" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
run_opts=()
build_opts=()
if [ "$ENGINE" = podman ]; then
  need=()
  for p in podman runc mmdebstrap uidmap fuse-overlayfs slirp4netns; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing Debian packages; as root: apt-get install -y ${need[*]}"
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  runtime=(--runtime runc)
  limits=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
  run_opts+=("${runtime[@]}" "${limits[@]}")
  build_opts+=("${runtime[@]}" "${limits[@]}" --network=host)
  # the base image, made here where no registry is reachable
  if ! podman image exists debian:12; then
    tar="${TMPDIR:-/tmp}/debian12-minbase.tar"
    say "making the debian:12 base with mmdebstrap (the host's apt sources)"
    apt_opts=()
    for f in /etc/apt/apt.conf.d/*; do
      [ -f "$f" ] && grep -q 'Check-Valid-Until\|Check-Date' "$f" && \
        apt_opts+=(--aptopt="$f")
    done
    mmdebstrap --quiet --variant=minbase "${apt_opts[@]}" bookworm "$tar" \
      || die "mmdebstrap failed"
    podman import --change 'CMD ["bash"]' "$tar" debian:12 >/dev/null
    rm -f "$tar"
  fi
  run_opts+=(--network=host)
  # the host's pip configuration, read-only where pip looks for it, and its CA bundle
  # beside the image's own (which the image's ca-certificates package writes): the build
  # installs from PyPI, and so do the package tests in the image
  host=()
  for path in /etc/pip.conf /etc/xdg/pip /opt/wheels; do
    [ -e "$path" ] && host+=(--volume "$path:$path:ro")
  done
  for var in $(env | grep -o '^PIP_[A-Z_]*' || true); do host+=(--env "$var=${!var}"); done
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    host+=(--volume /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
           --env PIP_CERT=/run/host-ca.crt)
  fi
  build_opts+=("${host[@]}")
  run_opts+=("${host[@]}")
fi

say "building $TAG with $ENGINE"
start=$(date +%s)
"$ENGINE" build "${build_opts[@]}" -t "$TAG" "$ROOT" > "${TMPDIR:-/tmp}/tcdcn-image-build.log" 2>&1 \
  || { tail -40 "${TMPDIR:-/tmp}/tcdcn-image-build.log"; die "build failed (log: ${TMPDIR:-/tmp}/tcdcn-image-build.log)"; }
built=$(( $(date +%s) - start ))
size=$("$ENGINE" image inspect --format '{{.Size}}' "$TAG")
say "built in ${built} s; image size $(( size / 1000000 )) MB"
[ $TEST = 1 ] || exit 0

mount=()
if [ -d "$SHARED" ]; then
  mount=(-v "$(cd "$SHARED" && pwd):/shared:ro")   # ../shared from WORKDIR /tcdcn-caffe
else
  say "no shared data at $SHARED: the tests that need it are skipped"
fi
say "running make test in the image"
start=$(date +%s)
set +e
"$ENGINE" run --rm "${run_opts[@]}" "${mount[@]}" "$TAG" make test > "${TMPDIR:-/tmp}/tcdcn-image-test.log" 2>&1
rc=$?
set -e
tested=$(( $(date +%s) - start ))
tail -1 "${TMPDIR:-/tmp}/tcdcn-image-test.log"
say "make test in the image: exit $rc in ${tested} s (log: ${TMPDIR:-/tmp}/tcdcn-image-test.log)"
exit $rc
