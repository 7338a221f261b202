# The forex service images: `make services` builds forex-web, forex-converter and
# forex-rate from this one file (--build-arg SERVICE=<name>), each tagged <version> and
# latest, with the repository root as the build context.
#
#   docker build -f compose/images/service.Dockerfile --build-arg SERVICE=forex-rate -t forex-rate .
#
# The app listens on 8080 (the mesh reaches it through the sidecar's ingress 4140;
# Prometheus scrapes its /metrics directly) and calls its peer through its sidecar's
# egress (http://127.0.0.1:4141, its default). The image
# also carries switchyard, so that Compose can run app and sidecar in one container
# (SWITCHYARD_CONFIG=…, see with-sidecar and docs/decisions/0008-container-sidecars.md).

ARG RUST_IMAGE=rust:1-bookworm
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proxy ./proxy
COPY services ./services
COPY bench ./bench
COPY test-support ./test-support
# One build for the three services (one crate) and the sidecar; the ECB history is
# compiled into forex-rate (services/data), so nothing else is copied at run time.
RUN cargo build --release --locked -p forex -p switchyard --bins

FROM debian:bookworm-slim
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=forex-web|forex-converter|forex-rate" >&2; exit 1; } \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin forex
COPY --from=build /src/target/release/${SERVICE} /usr/local/bin/${SERVICE}
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY compose/images/probe compose/images/with-sidecar /usr/local/bin/
COPY compose/sidecars/ /etc/switchyard/
ENV SERVICE=${SERVICE} FOREX_LISTEN=0.0.0.0:8080
USER 10001
# app, ingress, egress, admin; registrator registers all but the egress
EXPOSE 8080 4140 4141 9990
# The app itself, and the sidecar too when this container runs one.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "probe 127.0.0.1 8080 /health && { [ -z \"${SWITCHYARD_CONFIG:-}\" ] || probe 127.0.0.1 9990 /admin/ready; }"]
# Runs $SERVICE (and the sidecar when SWITCHYARD_CONFIG is set); arguments go to the app.
ENTRYPOINT ["with-sidecar"]
