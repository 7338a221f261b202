# Prometheus with the mesh's scrape config and rules baked in, for the Rancher metrics
# stack (rancher/metrics/), which cannot mount files from this checkout. Compose mounts
# prometheus/ instead. Built by `make services` as switchyard-prometheus.
FROM prom/prometheus:v2.53.0
COPY prometheus/ /etc/prometheus/
# The base image's entry point and user (nobody) stay; its default command reads
# /etc/prometheus/prometheus.yml and stores data in /prometheus.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"]
