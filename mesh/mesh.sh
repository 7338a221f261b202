#!/usr/bin/env bash
# mesh.sh — run the forex mesh on this machine: three services, a switchyard sidecar
# beside each instance, a file registry standing in for Consul + registrator, and
# HAProxy in front of forex-web.
#
#   mesh/mesh.sh up | down | status | clean | render | help
#   mesh/mesh.sh install-haproxy | install-prometheus | install-chromium | install-shellcheck
#   mesh/mesh.sh stop|kill|start|restart INSTANCE     one instance, e.g. forex-rate-2:
#     stop    deregister, let the sidecars notice, then TERM (graceful: nothing in flight is lost)
#     kill    KILL the app and its sidecar and leave the registry alone (a crash)
#     start   start it (FOREX_FAULT_DELAY_MS / FOREX_FAULT_ERROR_RATE inject faults), wait, register
#     restart stop, then start
#   (they register and deregister in the registry `up` used: the file registry, or Consul)
#
# Every instance gets its own loopback address (DESIGN.md §3), so the ports are the
# same as in containers: app 8080, ingress 4140, egress 4141, admin 9990.
#
# Environment:
#   MESH_NET=127.0        first two octets: forex-web $MESH_NET.1.N, forex-converter
#                         $MESH_NET.2.N, forex-rate $MESH_NET.3.N, HAProxy $MESH_NET.0.1:8080
#   RUN_DIR=./run         everything of one mesh: configs, registry, logs, pid files
#   WEB_INSTANCES=1 CONVERTER_INSTANCES=1 RATE_INSTANCES=1   instances per service
#   SKIP_BUILD=1          do not run cargo build (binaries must exist)
#   BIN_DIR=target/release  where the binaries are
#   WAIT_SECS=30          how long to wait for each process to answer
#   KEEP_ON_FAILURE=1     leave a half-started mesh running for debugging
#   CONSUL=http://HOST:PORT  use that Consul agent instead of the file registry: every
#                         instance's ingress (<service>) and admin (<service>-admin) port is
#                         registered with an HTTP check on /admin/ready (deregistered by
#                         `down`), sidecars resolve peers with the Consul namer, and the
#                         mesh-wide egress dtab is the KV key switchyard/dtabs/egress
#                         (without CONSUL: the file $RUN_DIR/dtabs/egress). See docs/consul.md.
#   PROMETHEUS=0          do not run Prometheus ($MESH_NET.0.1:9090, scraping every sidecar and app)
#   MESH_TRUST_DOMAIN=switchyard.local  the mesh CA's trust domain: identities are spiffe://<it>/svc/<name>
#   MESH_IDENTITY_VALID=24h  how long the identities `up` issues stay valid
#
# Every hop between sidecars (and HAProxy → forex-web's sidecar) is mutual TLS: `up` keeps a mesh CA in
# $RUN_DIR/identity/ca, issues each service (and HAProxy, `edge`) an identity, and each ingress admits only
# its expected caller. Admin writes need the token in $RUN_DIR/admin-token. See mesh/lib/identity.sh.
#
# The work is done by mesh/lib/: common.sh (logging, packages, processes), topology.sh (settings,
# addresses), registry.sh (file registry or Consul), identity.sh (CA, identities, authorization, admin
# token), render.sh (configs), processes.sh, instances.sh, haproxy.sh and prometheus.sh.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_NAME=mesh
# shellcheck source=mesh/lib/common.sh
source "$REPO_ROOT/mesh/lib/common.sh"
# shellcheck source=mesh/lib/topology.sh
source "$REPO_ROOT/mesh/lib/topology.sh"
# shellcheck source=mesh/lib/registry.sh
source "$REPO_ROOT/mesh/lib/registry.sh"
# shellcheck source=mesh/lib/identity.sh
source "$REPO_ROOT/mesh/lib/identity.sh"
# shellcheck source=mesh/lib/render.sh
source "$REPO_ROOT/mesh/lib/render.sh"
# shellcheck source=mesh/lib/processes.sh
source "$REPO_ROOT/mesh/lib/processes.sh"
# shellcheck source=mesh/lib/instances.sh
source "$REPO_ROOT/mesh/lib/instances.sh"
# shellcheck source=mesh/lib/haproxy.sh
source "$REPO_ROOT/mesh/lib/haproxy.sh"
# shellcheck source=mesh/lib/prometheus.sh
source "$REPO_ROOT/mesh/lib/prometheus.sh"

# Headless Chromium and its WebDriver, for the browser check (mesh/browser_test.py).
install_chromium() {
  ensure_packages Chromium "chromium chromedriver" chromium chromium-driver
}

build_binaries() {
  if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    say "SKIP_BUILD=1: using the binaries already in $BIN_DIR"
  else
    say "building release binaries (cargo build --release -p switchyard -p forex; quick when up to date)"
    (cd "$REPO_ROOT" && cargo build --release --bins -p switchyard -p forex)
  fi
  local binary
  for binary in switchyard forex-web forex-converter forex-rate; do
    [[ -x $BIN_DIR/$binary ]] || die "$BIN_DIR/$binary is missing: run 'make build' (or unset SKIP_BUILD)"
  done
}

print_urls() {
  local service i ip first_admin=""
  discovery_settings
  echo
  echo "forex mesh (MESH_NET=$MESH_NET, RUN_DIR=$RUN_DIR)"
  printf '  %-28s %s\n' "converter form (HAProxy)" "http://$PUBLIC_IP:$PUBLIC_PORT/"
  printf '  %-28s %s\n' "JSON API" "http://$PUBLIC_IP:$PUBLIC_PORT/api/convert?date=2016-09-05&from=USD&to=JPY&amount=100"
  printf '  %-28s %s\n' "HAProxy stats" "http://$PUBLIC_IP:$STATS_PORT/stats"
  if [[ $WITH_PROMETHEUS == 1 ]]; then
    printf '  %-28s %s\n' "Prometheus" "http://$PUBLIC_IP:$PROMETHEUS_PORT/ (targets: /targets, alerts: /alerts)"
  fi
  printf '\n  %-20s %-22s %-20s %-20s %s\n' instance app ingress egress "admin (metrics, dtabs)"
  while read -r service i; do
    ip=$(instance_ip "$service" "$i")
    printf '  %-20s %-22s %-20s %-20s %s\n' "$service-$i" "http://$ip:$APP_PORT" \
      "$ip:$INGRESS_PORT" "$ip:$EGRESS_PORT" "http://$ip:$ADMIN_PORT/"
    [[ $service == forex-converter && -z $first_admin ]] && first_admin="http://$ip:$ADMIN_PORT"
  done < <(each_instance)
  echo
  echo "  metrics:      curl $first_admin/admin/metrics/prometheus"
  echo "  read a dtab:  curl -i $first_admin/dtab/egress"
  echo "  admin writes need: -H \"Authorization: Bearer \$(cat $ADMIN_TOKEN_FILE)\""
  echo "                (the dashboard's Dtab tab asks for it; switchyard dtab reads \$SWITCHYARD_ADMIN_TOKEN)"
  echo "  change it:    curl -X PUT -H \"Authorization: Bearer \$(cat $ADMIN_TOKEN_FILE)\" \\"
  echo "                  --data-binary '$EGRESS_DTAB' $first_admin/dtab/egress"
  echo "  explain:      curl '$first_admin/delegator.json?router=egress&path=/svc/forex-rate'"
  echo "  identities:   $IDENTITY_DIR (mesh CA for spiffe://$TRUST_DOMAIN in $CA_DIR; every sidecar hop is mTLS)"
  echo "                $BIN_DIR/switchyard identity show $(identity_cert forex-rate)"
  echo "  logs:         $RUN_DIR/<instance>/*.log      stop: make down"
}

on_failed_start() {
  if [[ ${KEEP_ON_FAILURE:-0} == 1 ]]; then
    warn "start-up failed: KEEP_ON_FAILURE=1, leaving it running (logs in $RUN_DIR)"
  else
    warn "start-up failed: stopping what was started (logs stay in $RUN_DIR)"
    stop_all
  fi
}

cmd_up() {
  validate_settings
  case $(mesh_state) in
    up)
      say "the mesh in $RUN_DIR is already up: nothing changed"
      print_urls
      return 0
      ;;
    partial)
      die "the mesh in $RUN_DIR is partly running (see 'make status'); run 'make down' first"
      ;;
  esac
  install_haproxy
  if [[ $WITH_PROMETHEUS == 1 ]]; then install_prometheus; fi
  build_binaries
  mkdir -p "$RUN_DIR"
  registry_prepare
  identity_prepare
  render_configs
  check_configs
  if [[ $WITH_PROMETHEUS == 1 ]]; then write_prometheus_config; fi
  write_env
  # From here on, a failure stops whatever was started (unless KEEP_ON_FAILURE=1).
  trap on_failed_start EXIT
  start_services
  start_haproxy
  if [[ $WITH_PROMETHEUS == 1 ]]; then start_prometheus; fi
  trap - EXIT
  say "the mesh is up"
  print_urls
}

cmd_down() {
  validate_settings
  if [[ $(mesh_state) == down ]]; then
    say "nothing of the mesh in $RUN_DIR is running"
  fi
  consul_deregister
  stop_all
  say "the mesh in $RUN_DIR is down"
}

cmd_status() {
  validate_settings
  local service i ip dir
  echo "mesh in $RUN_DIR: $(mesh_state)"
  printf '  %-20s %-22s %-12s %-22s %s\n' instance app "app /health" sidecar "sidecar /admin/ready"
  while read -r service i; do
    ip=$(instance_ip "$service" "$i")
    dir=$(instance_dir "$service" "$i")
    printf '  %-20s %-22s %-12s %-22s %s\n' "$service-$i" "$(process_state "$dir/$service.pid")" \
      "$(probe "http://$ip:$APP_PORT/health")" "$(process_state "$dir/switchyard.pid")" \
      "$(probe "http://$ip:$ADMIN_PORT/admin/ready")"
  done < <(each_instance)
  printf '  %-20s %-22s %s\n' haproxy "$(process_state "$HAPROXY_DIR/haproxy.pid")" \
    "http://$PUBLIC_IP:$PUBLIC_PORT/health $(probe "http://$PUBLIC_IP:$PUBLIC_PORT/health")"
  if [[ -f $PROMETHEUS_DIR/prometheus.pid ]]; then
    printf '  %-20s %-22s %s\n' prometheus "$(process_state "$PROMETHEUS_DIR/prometheus.pid")" \
      "http://$PUBLIC_IP:$PROMETHEUS_PORT/-/ready $(probe "http://$PUBLIC_IP:$PROMETHEUS_PORT/-/ready")"
  fi
}

# Deletes RUN_DIR after stopping the mesh, but only if it looks like one of ours.
cmd_clean() {
  cmd_down
  [[ -d $RUN_DIR ]] || return 0
  if [[ -f $RUN_DIR/mesh.env || -d $RUN_DIR/registry || -z $(ls -A "$RUN_DIR") ]]; then
    rm -rf "$RUN_DIR"
    say "removed $RUN_DIR"
  else
    die "$RUN_DIR does not look like a mesh run folder: not deleting it"
  fi
}

# Writes the registry and every config of this RUN_DIR without starting anything: the
# container-config test compares these with compose/sidecars/ (compose/check/).
cmd_render() {
  validate_settings
  mkdir -p "$RUN_DIR"
  write_registry
  identity_prepare
  render_configs
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
  case ${1:-help} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    install-haproxy) install_haproxy ;;
    install-prometheus) install_prometheus ;;
    install-chromium) install_chromium ;;
    install-shellcheck) ensure_packages ShellCheck shellcheck shellcheck ;;
    render) cmd_render ;;
    stop | kill | start | restart) instance_command "$1" "${2:-}" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      exit 64
      ;;
  esac
}

main "$@"
