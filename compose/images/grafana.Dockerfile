# Grafana provisioned with the mesh's Prometheus data source and dashboards, for the
# Rancher metrics stack (rancher/metrics/), which cannot mount files from this
# checkout. Compose mounts grafana/ instead. Built by `make services` as
# switchyard-grafana.
FROM grafana/grafana:11.1.0
COPY grafana/provisioning/ /etc/grafana/provisioning/
COPY grafana/dashboards/ /var/lib/grafana/dashboards/
# The base image's user (grafana, 472) and entry point stay.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/api/health"]
