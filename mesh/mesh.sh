#!/usr/bin/env bash
# mesh.sh — run the forex mesh on this machine: three services, a switchyard sidecar
# beside each instance, a file registry standing in for Consul + registrator, and
# HAProxy in front of forex-web.
#
#   mesh/mesh.sh up | down | status | clean | install-haproxy | install-prometheus | install-chromium | render | help
#   mesh/mesh.sh stop|kill|start|restart INSTANCE     one instance, e.g. forex-rate-2:
#     stop    deregister, let the sidecars notice, then TERM (graceful: nothing in flight is lost)
#     kill    KILL the app and its sidecar and leave the registry alone (a crash)
#     start   start it (FOREX_FAULT_DELAY_MS / FOREX_FAULT_ERROR_RATE inject faults), wait, register
#     restart stop, then start
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
set -euo pipefail
# Bash 5.2 would treat '&' in a ${var//pattern/replacement} replacement as "the match".
shopt -u patsub_replacement 2>/dev/null || true

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MESH_DIR="$REPO_ROOT/mesh"

MESH_NET=${MESH_NET:-127.0}
RUN_DIR=${RUN_DIR:-run}
BIN_DIR=${BIN_DIR:-target/release}
WAIT_SECS=${WAIT_SECS:-30}
# Relative paths are relative to the repository root, wherever the script is run from.
[[ $RUN_DIR == /* ]] || RUN_DIR="$REPO_ROOT/$RUN_DIR"
[[ $BIN_DIR == /* ]] || BIN_DIR="$REPO_ROOT/$BIN_DIR"

APP_PORT=8080
INGRESS_PORT=4140
EGRESS_PORT=4141
ADMIN_PORT=9990
PUBLIC_PORT=8080
STATS_PORT=8404
PROMETHEUS_PORT=9090

# Start order: a service starts after the peers it calls.
SERVICES=(forex-rate forex-converter forex-web)
declare -A OCTET=([forex-web]=1 [forex-converter]=2 [forex-rate]=3)
declare -A PEER=([forex-web]=forex-converter [forex-converter]=forex-rate [forex-rate]="")
declare -A INSTANCES=(
  [forex-web]=${WEB_INSTANCES:-1}
  [forex-converter]=${CONVERTER_INSTANCES:-1}
  [forex-rate]=${RATE_INSTANCES:-1}
)

PUBLIC_IP="$MESH_NET.0.1"
REGISTRY_DIR="$RUN_DIR/registry"
# The mesh-wide egress dtab (file store) and, with CONSUL, what this run registered there.
DTAB_DIR="$RUN_DIR/dtabs"
CONSUL=${CONSUL:-}
CONSUL_IDS="$RUN_DIR/consul-registrations"
HAPROXY_DIR="$RUN_DIR/haproxy"
PROMETHEUS_DIR="$RUN_DIR/prometheus"
WITH_PROMETHEUS=${PROMETHEUS:-1}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'mesh: %s\n' "$*" >&2; }
die() {
  warn "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------
# Names and addresses

instance_ip() { printf '%s.%s.%s' "$MESH_NET" "${OCTET[$1]}" "$2"; }
instance_dir() { printf '%s/%s-%s' "$RUN_DIR" "$1" "$2"; }

# Prints "service index" for every instance, in start order.
each_instance() {
  local service i
  for service in "${SERVICES[@]}"; do
    for ((i = 1; i <= INSTANCES[$service]; i++)); do
      printf '%s %s\n' "$service" "$i"
    done
  done
}

validate_settings() {
  [[ $MESH_NET =~ ^127\.[0-9]{1,3}$ ]] || die "MESH_NET must look like 127.N (got '$MESH_NET')"
  [[ $WAIT_SECS =~ ^[0-9]+$ ]] || die "WAIT_SECS must be a number of seconds"
  if [[ -n $CONSUL ]]; then
    [[ $CONSUL =~ ^http://([^/:]+):([0-9]+)/?$ ]] || die "CONSUL must look like http://HOST:PORT (got '$CONSUL')"
    CONSUL_HOST=${BASH_REMATCH[1]}
    CONSUL_PORT=${BASH_REMATCH[2]}
    CONSUL=http://$CONSUL_HOST:$CONSUL_PORT
  fi
  [[ $WITH_PROMETHEUS =~ ^[01]$ ]] || die "PROMETHEUS must be 0 or 1 (got '$WITH_PROMETHEUS')"
  local service
  for service in "${SERVICES[@]}"; do
    [[ ${INSTANCES[$service]} =~ ^[1-9][0-9]?$ ]] ||
      die "instances of $service must be between 1 and 99 (got '${INSTANCES[$service]}')"
  done
}

# ---------------------------------------------------------------------------
# Processes: each one has <name>.pid and <name>.log in its folder, where <name> is
# the program's file name, so `down` can check a pid still belongs to that program.

# runs_program PID PROGRAM — the process's command is PROGRAM (its first word, or the
# second when an interpreter runs it as a script).
runs_program() {
  local pid=$1 program=$2 word
  [[ -r /proc/$pid/cmdline ]] || return 1
  while read -r word; do
    [[ ${word##*/} == "$program" ]] && return 0
  done < <(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 2)
  return 1
}

# pid_alive PIDFILE — the pid in the file runs the program the file is named after
# (a pid may have been reused by another program since we wrote the file).
pid_alive() {
  local pidfile=$1 pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  runs_program "$pid" "$(basename "$pidfile" .pid)"
}

# Every pid file of this RUN_DIR, front to back (HAProxy, forex-web, …), so that `down`
# stops the callers before the services they call.
our_pidfiles() {
  [[ -d $RUN_DIR ]] || return 0
  local pidfile rank
  find "$RUN_DIR" -mindepth 2 -maxdepth 2 -name '*.pid' | while read -r pidfile; do
    case $pidfile in
      "$HAPROXY_DIR"/*) rank=0 ;;
      "$RUN_DIR"/forex-web-*) rank=1 ;;
      "$RUN_DIR"/forex-converter-*) rank=2 ;;
      *) rank=3 ;;
    esac
    printf '%s %s\n' "$rank" "$pidfile"
  done | sort | cut -d ' ' -f 2-
}

# start_process DIR PROGRAM ARGS... — detached from this terminal (setsid), so Ctrl-C
# in the shell that ran `make up` does not take the mesh down.
start_process() {
  local dir=$1 program=$2
  shift 2
  local name
  name=$(basename "$program")
  (cd "$REPO_ROOT" && exec setsid nohup "$program" "$@" >"$dir/$name.log" 2>&1 </dev/null) &
  local pid=$! deadline=$((SECONDS + 5))
  printf '%s\n' "$pid" >"$dir/$name.pid"
  # Until exec completes, the pid still shows the shell, setsid or nohup; wait for it so
  # that from now on pid_alive (and so `down`) recognises the process.
  until runs_program "$pid" "$name"; do
    if [[ ! -d /proc/$pid ]] || ((SECONDS >= deadline)); then break; fi
    sleep 0.05
  done
}

# wait_http URL WHAT PIDFILE — until URL answers 2xx, the process dies, or WAIT_SECS pass.
wait_http() {
  local url=$1 what=$2 pidfile=$3 deadline=$((SECONDS + WAIT_SECS))
  while ! curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if ! pid_alive "$pidfile"; then
      show_log_tail "${pidfile%.pid}.log"
      die "$what exited before answering $url"
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail "${pidfile%.pid}.log"
      die "$what did not answer $url within ${WAIT_SECS}s"
    fi
    sleep 0.2
  done
  printf '    %-34s answers %s\n' "$what" "$url"
}

show_log_tail() {
  local log=$1
  [[ -f $log ]] || return 0
  warn "last lines of $log:"
  tail -n 30 "$log" | sed 's/^/    | /' >&2
}

# Stops every process we have a pid file for: TERM, up to 10 s to drain, then KILL.
stop_all() {
  local pidfile pid deadline=$((SECONDS + 10)) alive=()
  while read -r pidfile; do
    [[ -n $pidfile ]] || continue
    if pid_alive "$pidfile"; then
      pid=$(<"$pidfile")
      say "stopping $(basename "$pidfile" .pid) of $(basename "$(dirname "$pidfile")") (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      alive+=("$pidfile")
    fi
  done < <(our_pidfiles)
  for pidfile in "${alive[@]}"; do
    while pid_alive "$pidfile" && ((SECONDS < deadline)); do sleep 0.1; done
    if pid_alive "$pidfile"; then
      pid=$(<"$pidfile")
      warn "pid $pid did not stop within 10 s: sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  our_pidfiles | while read -r pidfile; do [[ -z $pidfile ]] || rm -f "$pidfile"; done
}

# stop_pidfiles SIGNAL PIDFILE... — signal each live process, wait up to 10 s, then KILL.
stop_pidfiles() {
  local signal=$1 pidfile pid deadline=$((SECONDS + 10))
  shift
  for pidfile in "$@"; do
    pid_alive "$pidfile" && kill "-$signal" "$(<"$pidfile")" 2>/dev/null || true
  done
  for pidfile in "$@"; do
    while pid_alive "$pidfile" && ((SECONDS < deadline)); do sleep 0.1; done
    if pid_alive "$pidfile"; then
      warn "pid $(<"$pidfile") did not stop within 10 s: sending KILL"
      kill -KILL "$(<"$pidfile")" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

# Prints "up", "down" or "partial" from the pid files of this RUN_DIR.
mesh_state() {
  local pidfile total=0 running=0
  while read -r pidfile; do
    [[ -n $pidfile ]] || continue
    total=$((total + 1))
    if pid_alive "$pidfile"; then running=$((running + 1)); fi
  done < <(our_pidfiles)
  if ((running == 0)); then
    echo down
  elif ((running == total)); then
    echo up
  else
    echo partial
  fi
}

# ---------------------------------------------------------------------------
# Preparation

install_haproxy() {
  if command -v haproxy >/dev/null 2>&1; then
    return 0
  fi
  say "HAProxy is not installed: installing the Debian package 'haproxy' with apt-get"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "HAProxy is missing and installing it needs root (or sudo)"
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy
  command -v haproxy >/dev/null 2>&1 || die "apt-get finished but haproxy is still not on PATH"
}

# Headless Chromium and its WebDriver, for the browser check (mesh/browser_test.py).
install_chromium() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  say "Chromium is not installed: installing the Debian packages 'chromium' and 'chromium-driver' with apt-get"
  local sudo=() apt_opts=(-y -qq -o DPkg::Lock::Timeout=300)
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "Chromium is missing and installing it needs root (or sudo)"
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # Another apt-get may run at the same time and clean the archive cache under us: try twice.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" chromium chromium-driver ||
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" chromium chromium-driver
  command -v chromedriver >/dev/null 2>&1 || die "apt-get finished but chromedriver is still not on PATH"
}

# Prometheus and promtool: Debian's package, without the recommended node exporter.
install_prometheus() {
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    return 0
  fi
  say "Prometheus is not installed: installing the Debian package 'prometheus' with apt-get"
  local sudo=() apt_opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=300)
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "Prometheus is missing and installing it needs root (or sudo)"
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" prometheus
  command -v promtool >/dev/null 2>&1 || die "apt-get finished but promtool is still not on PATH"
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

# render TEMPLATE OUTPUT KEY=VALUE... — replaces every @KEY@; plain bash, no sed/envsubst.
render() {
  local template=$1 output=$2 text pair key value
  shift 2
  text=$(<"$template")
  for pair in "$@"; do
    key=${pair%%=*}
    value=${pair#*=}
    text=${text//"@$key@"/"$value"}
  done
  if [[ $text =~ @[A-Z_]+@ ]]; then
    die "$template: no value for ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$text" >"$output.tmp"
  mv "$output.tmp" "$output"
}

# The file registry (registrator's role): one file per service, one ingress address
# per line. Written beside and renamed, so a watcher never reads a half-written file;
# the temporary lives outside registry/ so it is never mistaken for a service.
write_registry() {
  local service i tmp="$RUN_DIR/.registry-tmp"
  mkdir -p "$REGISTRY_DIR" "$tmp"
  for service in "${SERVICES[@]}"; do
    : >"$tmp/$service"
    for ((i = 1; i <= INSTANCES[$service]; i++)); do
      printf '%s:%s\n' "$(instance_ip "$service" "$i")" "$INGRESS_PORT" >>"$tmp/$service"
    done
    mv "$tmp/$service" "$REGISTRY_DIR/$service"
  done
  rmdir "$tmp"
  say "wrote the service registry in $REGISTRY_DIR"
}

# Discovery blocks of the sidecar template: the file registry, or the Consul agent at CONSUL.
discovery_settings() {
  if [[ -n $CONSUL ]]; then
    NAMERS_BLOCK="# Peers from Consul (registered by mesh.sh as registrator would: <service>, <service>-admin).
- kind: io.l5d.consul
  host: $CONSUL_HOST
  port: $CONSUL_PORT
  includeTag: false
  useHealthCheck: true
  setHost: false"
    EGRESS_DTAB="/svc => /#/io.l5d.consul/.local;"
    DTAB_STORE_BLOCK="    kind: io.l5d.consul
    host: $CONSUL_HOST
    port: $CONSUL_PORT
    key: switchyard/dtabs/egress"
  else
    NAMERS_BLOCK="# The local stand-in for Consul + registrator: mesh.sh writes one file per service
# into this directory, one \"IP:PORT\" line per instance's ingress sidecar.
- kind: io.l5d.fs
  rootDir: $REGISTRY_DIR"
    EGRESS_DTAB="/svc => /#/io.l5d.fs;"
    DTAB_STORE_BLOCK="    kind: io.l5d.fs
    path: $DTAB_DIR/egress"
  fi
}

# The mesh-wide egress dtab starts as the default: a fresh file, or the Consul KV key.
write_mesh_dtab() {
  discovery_settings
  if [[ -n $CONSUL ]]; then
    curl -fsS -o /dev/null --max-time 5 -X PUT --data-binary "$EGRESS_DTAB" "$CONSUL/v1/kv/switchyard/dtabs/egress" ||
      die "cannot write the KV key switchyard/dtabs/egress to the Consul agent at $CONSUL"
    say "wrote the mesh-wide egress dtab to Consul KV switchyard/dtabs/egress"
  else
    mkdir -p "$DTAB_DIR"
    printf '%s\n' "$EGRESS_DTAB" >"$DTAB_DIR/.egress.tmp"
    mv "$DTAB_DIR/.egress.tmp" "$DTAB_DIR/egress"
    say "wrote the mesh-wide egress dtab in $DTAB_DIR/egress"
  fi
}

# consul_register SERVICE INDEX — the instance's ingress and admin ports, as registrator
# names them (SERVICE_4140_NAME=<service>, SERVICE_9990_NAME=<service>-admin), each with
# an HTTP check on the sidecar's /admin/ready. No-op without CONSUL.
consul_register() {
  [[ -n $CONSUL ]] || return 0
  local service=$1 i=$2 ip name port id check
  ip=$(instance_ip "$service" "$i")
  check="{\"HTTP\": \"http://$ip:$ADMIN_PORT/admin/ready\", \"Interval\": \"1s\", \"Timeout\": \"1s\"}"
  for name in "$service" "$service-admin"; do
    port=$INGRESS_PORT
    [[ $name == *-admin ]] && port=$ADMIN_PORT
    id="mesh-$MESH_NET:$service-$i:$port"
    curl -fsS -o /dev/null --max-time 5 -X PUT --data-binary \
      "{\"ID\": \"$id\", \"Name\": \"$name\", \"Address\": \"$ip\", \"Port\": $port, \"Check\": $check}" \
      "$CONSUL/v1/agent/service/register" || die "Consul at $CONSUL refused to register $id"
    printf '%s\n' "$id" >>"$CONSUL_IDS"
  done
  printf '    %-34s registered in Consul as %s, %s-admin\n' "$service-$i" "$service" "$service"
}

# Removes every service this RUN_DIR registered (down), so traffic moves away before the processes stop.
consul_deregister() {
  [[ -f $CONSUL_IDS ]] || return 0
  local id agent
  agent=$(<"$RUN_DIR/consul-agent")
  while read -r id; do
    [[ -n $id ]] || continue
    curl -fsS -o /dev/null --max-time 5 -X PUT "$agent/v1/agent/service/deregister/$id" ||
      warn "could not deregister $id from $agent"
  done <"$CONSUL_IDS"
  say "deregistered this mesh's services from Consul at $agent"
  rm -f "$CONSUL_IDS"
}

render_configs() {
  local service i ip dir clear_context servers=""
  discovery_settings
  while read -r service i; do
    ip=$(instance_ip "$service" "$i")
    dir=$(instance_dir "$service" "$i")
    mkdir -p "$dir"
    # Only forex-web's ingress faces the outside (via HAProxy): drop any l5d-* context
    # a browser might send, so outsiders cannot reroute mesh traffic.
    clear_context=false
    [[ $service == forex-web ]] && clear_context=true
    render "$MESH_DIR/sidecar.yaml.tmpl" "$dir/sidecar.yaml" \
      INSTANCE="$service-$i" IP="$ip" ADMIN_PORT="$ADMIN_PORT" REGISTRY_DIR="$REGISTRY_DIR" \
      APP_PORT="$APP_PORT" INGRESS_PORT="$INGRESS_PORT" EGRESS_PORT="$EGRESS_PORT" \
      INGRESS_CLEAR_CONTEXT="$clear_context" NAMERS="$NAMERS_BLOCK" EGRESS_DTAB="$EGRESS_DTAB" \
      DTAB_STORE="$DTAB_STORE_BLOCK" LOG_DIR="$dir"
    if [[ $service == forex-web ]]; then
      servers+="    server $service-$i $ip:$INGRESS_PORT check"$'\n'
    fi
  done < <(each_instance)
  mkdir -p "$HAPROXY_DIR"
  render "$MESH_DIR/haproxy.cfg.tmpl" "$HAPROXY_DIR/haproxy.cfg" \
    PUBLIC_IP="$PUBLIC_IP" PUBLIC_PORT="$PUBLIC_PORT" STATS_PORT="$STATS_PORT" \
    WEB_SERVERS="${servers%$'\n'}"
  say "rendered sidecar configs and $HAPROXY_DIR/haproxy.cfg"
}

check_configs() {
  local service i dir
  say "checking every config before starting anything"
  while read -r service i; do
    dir=$(instance_dir "$service" "$i")
    "$BIN_DIR/switchyard" check "$dir/sidecar.yaml" ||
      die "switchyard check rejected $dir/sidecar.yaml (see above)"
  done < <(each_instance)
  haproxy -c -q -f "$HAPROXY_DIR/haproxy.cfg" || die "haproxy -c rejected $HAPROXY_DIR/haproxy.cfg"
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

write_env() {
  local service i ip var
  {
    echo "# The forex mesh in $RUN_DIR (written by mesh/mesh.sh up)."
    echo "MESH_NET=$MESH_NET"
    echo "RUN_DIR=$RUN_DIR"
    echo "PUBLIC_URL=http://$PUBLIC_IP:$PUBLIC_PORT"
    echo "HAPROXY_STATS_URL=http://$PUBLIC_IP:$STATS_PORT/stats"
    while read -r service i; do
      ip=$(instance_ip "$service" "$i")
      var=$(tr 'a-z-' 'A-Z_' <<<"$service")_$i
      echo "${var}_APP=http://$ip:$APP_PORT"
      echo "${var}_INGRESS=http://$ip:$INGRESS_PORT"
      echo "${var}_EGRESS=http://$ip:$EGRESS_PORT"
      echo "${var}_ADMIN=http://$ip:$ADMIN_PORT"
    done < <(each_instance)
  } >"$RUN_DIR/mesh.env.tmp"
  mv "$RUN_DIR/mesh.env.tmp" "$RUN_DIR/mesh.env"
}

# ---------------------------------------------------------------------------
# Starting

start_instance() {
  local service=$1 i=$2 ip dir peer args
  ip=$(instance_ip "$service" "$i")
  dir=$(instance_dir "$service" "$i")
  peer=${PEER[$service]}
  args=(--listen "$ip:$APP_PORT")
  # Apps reach their peer through their own egress sidecar, naming it by Host.
  [[ -n $peer ]] && args+=(--peer "http://$ip:$EGRESS_PORT" --peer-name "$peer")
  say "starting $service-$i on $ip (app :$APP_PORT, sidecar :$INGRESS_PORT/:$EGRESS_PORT/:$ADMIN_PORT)"
  start_process "$dir" "$BIN_DIR/$service" "${args[@]}"
  start_process "$dir" "$BIN_DIR/switchyard" run "$dir/sidecar.yaml"
}

wait_instance() {
  local service=$1 i=$2 ip dir
  ip=$(instance_ip "$service" "$i")
  dir=$(instance_dir "$service" "$i")
  wait_http "http://$ip:$APP_PORT/health" "$service-$i app" "$dir/$service.pid"
  wait_http "http://$ip:$ADMIN_PORT/admin/ready" "$service-$i sidecar" "$dir/switchyard.pid"
}

start_services() {
  local service i
  for service in "${SERVICES[@]}"; do
    for ((i = 1; i <= INSTANCES[$service]; i++)); do start_instance "$service" "$i"; done
    for ((i = 1; i <= INSTANCES[$service]; i++)); do wait_instance "$service" "$i"; done
    for ((i = 1; i <= INSTANCES[$service]; i++)); do consul_register "$service" "$i"; done
  done
}

start_haproxy() {
  say "starting HAProxy on $PUBLIC_IP:$PUBLIC_PORT in front of forex-web's ingress sidecar"
  # -db: stay in the foreground (we detach it ourselves) and log to stdout → haproxy.log.
  start_process "$HAPROXY_DIR" "$(command -v haproxy)" -db -f "$HAPROXY_DIR/haproxy.cfg"
  wait_http "http://$PUBLIC_IP:$PUBLIC_PORT/health" "HAProxy → forex-web" "$HAPROXY_DIR/haproxy.pid"
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

print_urls() {
  local service i ip first_admin=""
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
  echo "  change it:    curl -X PUT --data-binary '/svc=>/#/io.l5d.fs;' $first_admin/dtab/egress"
  echo "  explain:      curl '$first_admin/delegator.json?router=egress&path=/svc/forex-rate'"
  echo "  logs:         $RUN_DIR/<instance>/*.log      stop: make down"
}

# ---------------------------------------------------------------------------
# Commands

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
  write_registry
  write_mesh_dtab
  if [[ -n $CONSUL ]]; then
    printf '%s\n' "$CONSUL" >"$RUN_DIR/consul-agent"
    : >"$CONSUL_IDS"
  fi
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

# ---------------------------------------------------------------------------
# One instance at a time: for demos and the fault tests (mesh/fault_test.py).

# parse_instance NAME — sets INSTANCE_SERVICE and INSTANCE_INDEX from e.g. forex-rate-2.
parse_instance() {
  [[ ${1:-} =~ ^(forex-web|forex-converter|forex-rate)-([1-9][0-9]?)$ ]] ||
    die "expected an instance such as forex-rate-2, got '${1:-}'"
  INSTANCE_SERVICE=${BASH_REMATCH[1]}
  INSTANCE_INDEX=${BASH_REMATCH[2]}
  [[ -f $(instance_dir "$INSTANCE_SERVICE" "$INSTANCE_INDEX")/sidecar.yaml ]] ||
    die "$1 is not part of the mesh in $RUN_DIR (start it with ${INSTANCE_SERVICE#forex-}_INSTANCES=$INSTANCE_INDEX or more: make up RATE_INSTANCES=N)"
}

# registry_edit SERVICE add|remove LINE — rewrites the service's registry file atomically.
registry_edit() {
  local service=$1 op=$2 line=$3 file="$REGISTRY_DIR/$1" tmp="$RUN_DIR/.registry-edit"
  touch "$file"
  grep -vxF -- "$line" "$file" >"$tmp" || true
  [[ $op == add ]] && printf '%s\n' "$line" >>"$tmp"
  sort -o "$tmp" "$tmp"
  mv "$tmp" "$file"
}

cmd_instance() {
  local action=$1 name=$2 ip dir entry
  parse_instance "$name"
  ip=$(instance_ip "$INSTANCE_SERVICE" "$INSTANCE_INDEX")
  dir=$(instance_dir "$INSTANCE_SERVICE" "$INSTANCE_INDEX")
  entry="$ip:$INGRESS_PORT"
  case $action in
    stop | restart)
      say "deregistering $name ($entry) and waiting for the sidecars to notice"
      registry_edit "$INSTANCE_SERVICE" remove "$entry"
      sleep 1
      say "stopping $name: sidecar (drains in-flight requests), then the app"
      stop_pidfiles TERM "$dir/switchyard.pid"
      stop_pidfiles TERM "$dir/$INSTANCE_SERVICE.pid"
      ;;
    kill)
      say "killing $name (app and sidecar, SIGKILL; the registry still lists it, as after a crash)"
      stop_pidfiles KILL "$dir/$INSTANCE_SERVICE.pid" "$dir/switchyard.pid"
      ;;
  esac
  case $action in
    start | restart)
      pid_alive "$dir/switchyard.pid" && die "$name is already running"
      start_instance "$INSTANCE_SERVICE" "$INSTANCE_INDEX"
      wait_instance "$INSTANCE_SERVICE" "$INSTANCE_INDEX"
      registry_edit "$INSTANCE_SERVICE" add "$entry"
      say "$name is up and registered"
      ;;
  esac
}

# probe URL — prints "answers" or "no answer".
probe() {
  if curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; then echo answers; else echo "no answer"; fi
}

process_state() {
  if pid_alive "$1"; then echo "running (pid $(<"$1"))"; else echo stopped; fi
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
    render) cmd_render ;;
    stop | kill | start | restart) cmd_instance "$1" "${2:-}" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      exit 64
      ;;
  esac
}

main "$@"
