# syntax=docker/dockerfile:1
# The coebench image: the operator (`coebench-operator`, the entry point) and the runner
# (`coebench`, which runner Jobs and the chart's simulator run) in one minimal non-root image.
#
#   docker build -t coebench:dev .
#
# The Helm chart uses one image for all three (image.repository / image.tag).

# Build stage: both binaries, release profile, exactly the locked dependency versions.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the registry and the build between builds (BuildKit); the binaries are
# copied out of the cached target folder in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p coebench-runner -p coebench-operator \
        --bin coebench --bin coebench-operator \
    && mkdir -p /out \
    && cp target/release/coebench target/release/coebench-operator /out/

# Runtime stage: glibc and libgcc only (the binaries carry their TLS roots), no shell, and the
# distroless `nonroot` user, UID and GID 65532, which the chart's security contexts expect.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/coebench /usr/local/bin/coebench
COPY --from=build /out/coebench-operator /usr/local/bin/coebench-operator
USER 65532:65532
# The operator's /healthz, /readyz and /metrics; the simulator listens on 8080 too.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/coebench-operator"]
