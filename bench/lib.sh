# shellcheck shell=bash
# bench/lib.sh — what the benchmark scripts share: starting and stopping processes, waiting for them, the
# sidecar configs and the mesh PKI they use, and reading a process's memory. Sourced after the script has set
# BIN, WORK and LOOPBACK and cd'ed to the repository root.
#
# PROXY_PREFIX and LOAD_PREFIX are empty here: a script that pins processes to CPUs sets them (e.g. to
# `taskset -c 1`); start_switchyard starts the proxy under PROXY_PREFIX, handshakes its client under LOAD_PREFIX.

LOG_NAME=bench
# shellcheck source=mesh/lib/common.sh
source "$REPO_ROOT/mesh/lib/common.sh"

STARTED_PIDS=()
PROXY_PREFIX=()
LOAD_PREFIX=()
# cleanup — the EXIT trap: stops every process this script started (TERM, then KILL after the grace period).
cleanup() {
  local pid
  stop_processes TERM "${STARTED_PIDS[@]}"
  for pid in "${STARTED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# start NAME COMMAND... — in the background, output to $WORK/NAME.log; sets LAST_PID.
start() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 </dev/null &
  LAST_PID=$!
  STARTED_PIDS+=("$LAST_PID")
}

# wait_up URL PID NAME — true once URL answers; false (with the log) if the process dies
# or 15 s pass.
wait_up() {
  local url=$1 pid=$2 name=$3 host=(-H 'Host: upstream')
  # A sidecar's admin server answers only to its own names (no DNS rebinding): no Host override there.
  [[ $url == */admin/* ]] && host=()
  wait_for "$url" 15 "$pid" "${host[@]}" && return 0
  show_log_tail "$WORK/$name.log" 15 "$name did not come up at $url; last lines of $WORK/$name.log:"
  return 1
}

# build — the release binaries with cargo, unless SKIP_BUILD=1.
build() {
  if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    say "SKIP_BUILD=1: using the binaries in $BIN"
    return
  fi
  say "building the load harness (cargo build --release -p switchyard-bench)"
  cargo build --release --bins -p switchyard-bench
  say "building the proxy (cargo build --release -p switchyard)"
  cargo build --release --bins -p switchyard || warn "switchyard does not build: its rows will be n/a"
}

# sidecar_config FILE LABEL LISTEN_PORT ADMIN_PORT NEXT_PORT — one router sending every
# /svc/* name to 127.0.0.1:NEXT_PORT.
sidecar_config() {
  cat >"$1" <<EOF
# switchyard for bench/run.sh: one $2 router, everything to $LOOPBACK:$5.
admin:
  ip: $LOOPBACK
  port: $4
routers:
- protocol: http
  label: $2
  dtab: |
    /svc/* => /\$/inet/$LOOPBACK/$5;
  servers:
  - ip: $LOOPBACK
    port: $3
EOF
}

# start_switchyard NAME LABEL LISTEN_PORT NEXT_PORT [TLS] [POOL] — sets LAST_PID and LAST_ADMIN (its admin
# port); false if it fails. TLS: `server` (this router's server is an mTLS listener with the ingress identity)
# or `client` (it reaches NEXT_PORT over mTLS with the egress identity). POOL: its hostConnectionPool, as a
# YAML flow map.
start_switchyard() {
  local name=$1 label=$2 port=$3 next=$4 tls=${5:-} pool=${6:-} admin
  switchyard_built || return 1
  admin=$(free_port)
  sidecar_config "$WORK/$name.yaml" "$label" "$port" "$admin" "$next"
  if [[ $tls == server ]]; then
    cat >>"$WORK/$name.yaml" <<EOF
    tls:
      certPath: $PKI/ingress/bench-ingress.pem
      keyPath: $PKI/ingress/bench-ingress.key
      caCertPath: $PKI/ca/ca.pem
      requireClientAuth: true
EOF
  fi
  if [[ $tls == client || -n $pool ]]; then
    echo "  client:" >>"$WORK/$name.yaml"
  fi
  if [[ -n $pool ]]; then
    echo "    hostConnectionPool: $pool" >>"$WORK/$name.yaml"
  fi
  if [[ $tls == client ]]; then
    cat >>"$WORK/$name.yaml" <<EOF
    tls:
      commonName: bench-ingress.$TRUST_DOMAIN
      trustCerts: [$PKI/ca/ca.pem]
      clientAuth: {certPath: $PKI/egress/bench-egress.pem, keyPath: $PKI/egress/bench-egress.key}
EOF
  fi
  run_sidecar "$name" "$admin"
}

# switchyard_built — true when the proxy binary is there (else says so).
switchyard_built() {
  [[ -x $BIN/switchyard ]] && return 0
  warn "$BIN/switchyard is missing"
  return 1
}

# run_sidecar NAME ADMIN_PORT — starts switchyard on $WORK/NAME.yaml (under PROXY_PREFIX) and waits until its admin
# on ADMIN_PORT is ready; sets LAST_PID and LAST_ADMIN.
run_sidecar() {
  # shellcheck disable=SC2034 # read by the scripts that source this file
  LAST_ADMIN=$2
  start "$1" "${PROXY_PREFIX[@]}" "$BIN/switchyard" run "$WORK/$1.yaml"
  wait_up "http://$LOOPBACK:$2/admin/ready" "$LAST_PID" "$1"
}

# mesh_sidecar_config FILE LABEL LISTEN_PORT ADMIN_PORT NEXT_PORT ACCESS_LOG — sidecar_config's router configured
# as the mesh sidecar's egress router (mesh/sidecar.yaml.tmpl) with everything it does per request: an access log,
# the caller's context honoured, peak-EWMA balancing, failure accrual, timeouts, hedging and budgeted retries. It
# differs in what is not per request or not this router's: plaintext to 127.0.0.1:NEXT_PORT (no TLS), a static
# dtab (no dtab store), no namers.
mesh_sidecar_config() {
  sidecar_config "$@"
  cat >>"$1" <<EOF
    clearContext: false
  httpAccessLog: $6
  client:
    kind: io.l5d.static
    connectTimeoutMs: 500
    requestAttemptTimeoutMs: 2000
    loadBalancer: {kind: ewma, decayTimeMs: 10000}
    failureAccrual:
      kind: io.l5d.consecutiveFailures
      failures: 5
      backoff: {kind: jittered, minMs: 1000, maxMs: 30000}
  service:
    totalTimeoutMs: 5000
    responseClassifier: {kind: io.l5d.http.retryableRead5XX}
    hedging: {percentile: 95, minMs: 2}
    retries:
      budget: {ttlSecs: 10, minRetriesPerSec: 10, percentCanRetry: 0.2}
      backoff: {kind: jittered, minMs: 5, maxMs: 200}
EOF
}

# start_mesh_switchyard NAME LABEL LISTEN_PORT NEXT_PORT — a sidecar with mesh_sidecar_config (its access log:
# $WORK/NAME-access.log), checked with `switchyard check` first; sets LAST_PID and LAST_ADMIN; false if the
# config is refused or the proxy does not start.
start_mesh_switchyard() {
  local name=$1 label=$2 port=$3 next=$4 admin
  switchyard_built || return 1
  admin=$(free_port)
  mesh_sidecar_config "$WORK/$name.yaml" "$label" "$port" "$admin" "$next" "$WORK/$name-access.log"
  if ! "$BIN/switchyard" check "$WORK/$name.yaml" >"$WORK/$name.check" 2>&1; then
    show_log_tail "$WORK/$name.check" 15 "switchyard check refused $WORK/$name.yaml:"
    return 1
  fi
  run_sidecar "$name" "$admin"
}

# haproxy_config PORT UPSTREAM EDGE TLS — what both benchmarks' HAProxy configs share: keep-alive HTTP on both
# sides, PORT as one hop to UPSTREAM, and EDGE → TLS (mutual TLS with the mesh's bench certificates) → UPSTREAM
# as two hops.
haproxy_config() {
  local port=$1 upstream=$2 edge=$3 tls=$4
  cat <<EOF
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend one-hop
    bind $LOOPBACK:$port
    default_backend upstream
frontend tls-edge
    bind $LOOPBACK:$edge
    default_backend tls-hop
frontend tls-ingress
    bind $LOOPBACK:$tls ssl crt $PKI/ingress/haproxy.pem ca-file $PKI/ca/ca.pem verify required alpn http/1.1
    default_backend upstream
backend upstream
    server upstream $LOOPBACK:$upstream
backend tls-hop
    server ingress $LOOPBACK:$tls ssl crt $PKI/egress/haproxy.pem ca-file $PKI/ca/ca.pem verify required verifyhost bench-ingress.$TRUST_DOMAIN alpn http/1.1
EOF
}

# nginx_config DIR PORT UPSTREAM WORKERS WHO — DIR/nginx.conf (its paths all under DIR): nginx as a keep-alive
# HTTP reverse proxy from PORT to UPSTREAM with WORKERS worker processes, for WHO.
nginx_config() {
  local dir=$1 port=$2 upstream=$3 workers=$4 who=$5
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
# nginx for $who: HTTP reverse proxy, keep-alive on both sides.
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # No limit on requests per keep-alive connection (nginx closes after 1,000 by default; HAProxy and
    # switchyard do not close at all), on either side.
    keepalive_requests 1000000;
    upstream bench {
        server $LOOPBACK:$upstream;
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen $LOOPBACK:$port;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

PKI=$WORK/pki
TRUST_DOMAIN=bench.local
# make_pki — a mesh CA and the two identities the mTLS rows use (HAProxy gets them as cert+key files too).
make_pki() {
  "$BIN/switchyard" identity ca --trust-domain "$TRUST_DOMAIN" --out "$PKI/ca" >/dev/null
  "$BIN/switchyard" identity issue --ca "$PKI/ca" --service bench-ingress --out "$PKI/ingress" >/dev/null
  "$BIN/switchyard" identity issue --ca "$PKI/ca" --service bench-egress --out "$PKI/egress" >/dev/null
  cat "$PKI/ingress/bench-ingress.pem" "$PKI/ingress/bench-ingress.key" >"$PKI/ingress/haproxy.pem"
  cat "$PKI/egress/bench-egress.pem" "$PKI/egress/bench-egress.key" >"$PKI/egress/haproxy.pem"
}

# handshakes PORT — full mutual-TLS handshakes per second a server accepts (bench/handshakes.py: one client,
# a new session for every connection, 5 s).
handshakes() {
  "${LOAD_PREFIX[@]}" python3 bench/handshakes.py "$LOOPBACK:$1" "$PKI/egress/bench-egress.pem" \
    "$PKI/egress/bench-egress.key" "$PKI/ca/ca.pem" "bench-ingress.$TRUST_DOMAIN" 5 2>/dev/null || printf 'n/a'
}

# status_kib FIELD PID... — a /proc/PID/status field in KiB (VmRSS, VmHWM), summed over the processes.
status_kib() {
  local field=$1 pid total=0 kb
  shift
  for pid in "$@"; do
    kb=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# rss_kib PID... — resident memory of the processes, summed, in KiB.
rss_kib() { status_kib VmRSS "$@"; }

