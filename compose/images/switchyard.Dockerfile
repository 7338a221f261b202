# The switchyard sidecar image: `make services` builds it as switchyard:<version> and
# switchyard:latest, with the repository root as the build context.
#
#   docker build -f compose/images/switchyard.Dockerfile -t switchyard .
#   docker run switchyard run /etc/switchyard/forex-rate.yaml
#
# The container sidecar configs (compose/sidecars/) are baked in for Rancher, which has
# no way to mount files from this checkout; Compose mounts them instead. Certificates and
# the admin token are not: they are mounted at run time (README "Containers"), after
# `docker run --entrypoint issue-identities switchyard …` (the same image) has issued them.

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
# The mount points of the identity volumes, owned by the non-root user: Docker gives a new named volume
# the owner of the directory it is first mounted on, so the issuer (issue-identities, also this image)
# can write there without root. /var/lib/switchyard/ca: the Compose CA's volume; /identities/<name>:
# what the Compose `identity` service issues; /identity: what a sidecar reads (Rancher's identity
# sidekick writes it too). They are empty here: no certificate or key is ever part of an image.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin switchyard \
 && mkdir -p /var/lib/switchyard/ca /identity \
      /identities/edge /identities/forex-web /identities/forex-converter /identities/forex-rate \
 && chown -R 10001:10001 /var/lib/switchyard /identity /identities \
 && chmod 0700 /var/lib/switchyard/ca
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY compose/images/probe compose/images/issue-identities /usr/local/bin/
COPY compose/sidecars/ /etc/switchyard/
USER 10001
# ingress, egress, admin (linkerd's ports)
EXPOSE 4140 4141 9990
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["probe", "127.0.0.1", "9990", "/admin/ready"]
ENTRYPOINT ["switchyard"]
CMD ["run", "/etc/switchyard/sidecar.yaml"]
