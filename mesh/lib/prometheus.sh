# shellcheck shell=bash
# prometheus.sh — Prometheus beside the local mesh: installing it (Debian's package, with promtool), its
# folder in the run folder (scrape config and rules copied from prometheus/, file-SD targets for every sidecar
# and app), and starting it on $MESH_NET.0.1:9090. Sourced by mesh/mesh.sh.

# Prometheus and promtool: Debian's package, without the recommended node exporter.
install_prometheus() {
  ensure_packages Prometheus "prometheus promtool" --no-install-recommends prometheus
}

# Prometheus' folder in RUN_DIR: prometheus/prometheus-local.yml and the rules, copied (so a running
# mesh keeps what it started with), and the file-SD targets: every sidecar's admin port and every app,
# labelled with its service and instance name (what Consul SD and relabelling give in containers).
write_prometheus_config() {
  local service i ip sidecars=() apps=()
  mkdir -p "$PROMETHEUS_DIR/targets" "$PROMETHEUS_DIR/rules"
  cp "$REPO_ROOT/prometheus/prometheus-local.yml" "$PROMETHEUS_DIR/prometheus.yml"
  rm -f "$PROMETHEUS_DIR"/rules/*.yml
  cp "$REPO_ROOT"/prometheus/rules/*.yml "$PROMETHEUS_DIR/rules/"
  while read -r service i; do
    ip=$(instance_ip "$service" "$i")
    sidecars+=("$(target_json "$ip:$ADMIN_PORT" "$service" "$i")")
    apps+=("$(target_json "$ip:$APP_PORT" "$service" "$i")")
  done < <(each_instance)
  write_targets "$PROMETHEUS_DIR/targets/switchyard.json" "${sidecars[@]}"
  write_targets "$PROMETHEUS_DIR/targets/forex.json" "${apps[@]}"
  promtool check config "$PROMETHEUS_DIR/prometheus.yml" >/dev/null ||
    die "promtool check config rejected $PROMETHEUS_DIR/prometheus.yml"
  say "wrote $PROMETHEUS_DIR (scrape config, rules, targets)"
}

# target_json ADDRESS SERVICE INDEX — one file-SD entry.
target_json() {
  printf '{"targets": ["%s"], "labels": {"service": "%s", "instance": "%s-%s"}}' "$1" "$2" "$2" "$3"
}

# write_targets FILE ENTRY... — a JSON list, written beside and renamed (Prometheus watches the file).
write_targets() {
  local file=$1 joined
  shift
  joined=$(printf '  %s,\n' "$@")
  printf '[\n%s\n]\n' "${joined%,}" >"$file.tmp"
  mv "$file.tmp" "$file"
}

start_prometheus() {
  local url="http://$PUBLIC_IP:$PROMETHEUS_PORT"
  say "starting Prometheus on $PUBLIC_IP:$PROMETHEUS_PORT (every sidecar and app, every 2 s; data in $PROMETHEUS_DIR/data)"
  start_process "$PROMETHEUS_DIR" "$(command -v prometheus)" \
    --config.file="$PROMETHEUS_DIR/prometheus.yml" \
    --storage.tsdb.path="$PROMETHEUS_DIR/data" \
    --storage.tsdb.retention.time=2d \
    --web.listen-address="$PUBLIC_IP:$PROMETHEUS_PORT"
  wait_http "$url/-/ready" "Prometheus" "$PROMETHEUS_DIR/prometheus.pid"
}
