# The pollwatch worker image.
#
#   docker compose up --build     builds it from source: stage `base` (Debian slim, the user,
#                                 config/ and missions/), `build` (the official Rust image), then
#                                 `runtime` (base with the binary)
#
# A pure build from source, with any builder (BuildKit or the classic one, which builds every
# stage up to the target). CI, which cannot pull a Rust image, packs a binary built on the host
# with .ci/prebuilt.Dockerfile on top of stage `base` instead.
#
# The image holds the binary, config/ and missions/; it runs `pollwatch worker` as an
# unprivileged user, keeps a SQLite store in the volume /var/lib/pollwatch, and serves /healthz,
# /readyz and /metrics on port 8080. Settings come from POLLWATCH__SECTION__KEY variables.

ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS base
RUN useradd --system --home-dir /app --shell /usr/sbin/nologin pollwatch \
    && mkdir -p /var/lib/pollwatch \
    && chown pollwatch /var/lib/pollwatch
WORKDIR /app
COPY config /app/config
COPY missions /app/missions
ENV POLLWATCH__STORE__URL=sqlite:///var/lib/pollwatch/pollwatch.db \
    POLLWATCH__HTTP__BIND=0.0.0.0:8080 \
    POLLWATCH__TELEMETRY__FORMAT=json
VOLUME /var/lib/pollwatch
EXPOSE 8080
USER pollwatch
ENTRYPOINT ["pollwatch"]
CMD ["worker", "--mission", "missions/kg-2021"]

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pollwatch && cp target/release/pollwatch /pollwatch

FROM base AS runtime
COPY --from=build /pollwatch /usr/local/bin/pollwatch
