# The CI image: Debian 12 running the same setup script and tests as `.ci/run`, with no
# logic of its own. (The development machines have no Docker engine; this file is kept
# thin so that what CI proves on them holds for the image.)
FROM debian:12
RUN apt-get update \
 && apt-get install -y --no-install-recommends make ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tcdcn-caffe
COPY . .
RUN bash tools/setup.sh
CMD ["make", "test"]
