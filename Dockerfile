# wopigate container image: build with the Rust toolchain, run on distroless as non-root.
#   docker build -t wopigate:0.1.0 .
#   docker run --read-only -p 8080:8080 -p 9090:9090 -v wopigate-data:/data \
#     -e WOPIGATE_TOKEN_SECRET=... -e WOPIGATE_VIEWERS='[...]' wopigate:0.1.0

FROM rust:1.95-bookworm AS build
WORKDIR /src
# What the build needs, no more (examples/compose/data holds a demo's documents): benches/ only
# because Cargo.toml names a bench target.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin wopigate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wopigate /usr/local/bin/wopigate
# Configured only through the environment; /data is needed only for the local store. /metrics
# is on its own port, apart from the one the WOPI clients and the platform reach.
ENV WOPIGATE_BIND=0.0.0.0:8080 \
    WOPIGATE_METRICS_BIND=0.0.0.0:9090 \
    WOPIGATE_DATA_DIR=/data \
    WOPIGATE_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080 9090
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/wopigate"]
CMD ["serve"]
