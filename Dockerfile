# The CI image: Debian 12 running the same setup script and tests as `.ci/run`, with no
# logic of its own. tools/build_image.sh builds it (with podman from Debian's packages, or
# Docker) and runs `make test` in it; docs/build.md says how CI uses it.
#
# Smaller than a developer's setup: OpenBLAS (Debian's) instead of oneMKL's 1 GB of wheels,
# no compile-only CUDA check (NVIDIA's nvcc and cuBLAS wheels), no pip or ccache caches
# (PIP_NO_CACHE_DIR, CCACHE_DISABLE: nothing to clean up afterwards).
# The image has no git and no .git (.dockerignore): tools record the commit as "unknown".
FROM debian:12
ENV TCDCN_BLAS=openblas-openmp \
    TCDCN_CUDA_CHECK=0 \
    PIP_NO_CACHE_DIR=1 \
    CCACHE_DISABLE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends make ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tcdcn-caffe
COPY . .
RUN bash tools/setup.sh \
 && rm -rf /var/lib/apt/lists/*
CMD ["make", "test"]
