# The switchyard sidecar image: `make services` builds it as switchyard:<version> and
# switchyard:latest, with the repository root as the build context.
#
#   docker build -f compose/images/switchyard.Dockerfile -t switchyard .
#   docker run switchyard run /etc/switchyard/forex-rate.yaml
#
# The container sidecar configs (compose/sidecars/) are baked in for Rancher, which has
# no way to mount files from this checkout; Compose mounts them instead.

# Build: the official Rust image on the same Debian release as the runtime (glibc).
ARG RUST_IMAGE=rust:1-bookworm
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Every workspace member must be present for cargo to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY proxy ./proxy
COPY services ./services
COPY bench ./bench
COPY test-support ./test-support
RUN cargo build --release --locked -p switchyard --bin switchyard

# Run: a small Debian base (bash for the health probe), a non-root user, one binary.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY compose/images/probe /usr/local/bin/probe
COPY compose/sidecars/ /etc/switchyard/
USER 10001
# ingress, egress, admin (linkerd's ports)
EXPOSE 4140 4141 9990
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["probe", "127.0.0.1", "9990", "/admin/ready"]
ENTRYPOINT ["switchyard"]
CMD ["run", "/etc/switchyard/sidecar.yaml"]
