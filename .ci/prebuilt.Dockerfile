# CI's worker image: the Dockerfile's stage `base` with a binary built on the host (CI cannot pull
# the Rust image the Dockerfile builds with; the host is Debian bookworm, as `base` is).
#
#   docker build --target base -t pollwatch:base .
#   docker build -f .ci/prebuilt.Dockerfile --build-arg BINARY=pollwatch-bin -t pollwatch:local .

ARG BASE=pollwatch:base
FROM ${BASE}
ARG BINARY=pollwatch-bin
COPY ${BINARY} /usr/local/bin/pollwatch
