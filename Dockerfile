# syntax=docker/dockerfile:1
# One image for the engine's three services, chosen by the container's command (`communication`,
# `gateway`, `workflow`; `workflow migrate` is the migration Job's, `workflow validate FILE`
# checks a lifecycle spec). The manifests in k8s/ run it as user 65532 with a read-only root filesystem;
# `workflows.yaml` and `channels.yaml` come from a mounted ConfigMap (/etc/inbox/config), every
# setting from the environment. e2e/tests/k8s.rs checks that what this file copies is what
# `cargo build --release` produces and what the manifests start.
#
#   docker build -t inbox-engine:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka (built by rdkafka-sys) needs the C toolchain of this image and OpenSSL headers; the protobuf
# contracts compile with a vendored compiler (no protoc).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin communication --bin gateway --bin workflow \
 && mkdir -p /out \
 && cp target/release/communication target/release/gateway target/release/workflow /out/

# The web apps (console, widget) the services serve from INBOX_WEB_ROOT.
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
COPY proto/ /src/proto/
RUN npm run build

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/communication /out/gateway /out/workflow /usr/local/bin/
COPY workflows.yaml channels.yaml /etc/inbox/config/
COPY --from=web /src/web/dist /usr/share/inbox/web
USER 65532:65532
WORKDIR /tmp
ENV INBOX_SPEC=/etc/inbox/config/workflows.yaml \
    INBOX_CHANNELS=/etc/inbox/config/channels.yaml \
    INBOX_WEB_ROOT=/usr/share/inbox/web
# communication: 8080 (client HTTP + WebSocket, the widget); gateway: 8443 (gRPC, h2c), 8081 (the
# console and gRPC-Web); ops: 9090.
EXPOSE 8080 8081 8443 9090
ENTRYPOINT []
CMD ["workflow"]
