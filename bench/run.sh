#!/usr/bin/env bash
# run.sh — `make bench`: what a switchyard hop costs, next to no proxy and to HAProxy.
#
# Starts, all on 127.0.0.1 with free ports: the bench upstream (`200 ok`), one switchyard
# hop in front of it, two hops (egress sidecar → ingress sidecar → upstream, as in the
# mesh) and HAProxy in front of it. For each target it runs the load harness flat-out
# (throughput) and at a fixed rate (latency percentiles measured open-loop), reads the
# proxies' memory from /proc, prints one table and writes it to target/bench/latest.md.
#
# Environment: BENCH_SECS=10 (per run), BENCH_CONNECTIONS=32 (flat-out), BENCH_RATE=1000
# (requests/s of the latency run), SKIP_BUILD=1 (use the binaries in target/release).
# Targets whose proxy is missing or does not start are reported as n/a.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
SECS=${BENCH_SECS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
RATE=${BENCH_RATE:-1000}
# Few connections for the paced run: enough to absorb a stall, as a real caller's pool.
RATE_CONNECTIONS=${BENCH_RATE_CONNECTIONS:-8}
BIN=target/release
WORK=target/bench/run
REPORT=target/bench/latest.md
LOOPBACK=127.0.0.1

LOG_NAME=bench
# shellcheck source=bench/lib.sh
source bench/lib.sh

# start_haproxy PORT UPSTREAM TWO_HOP_PORT TLS_EDGE_PORT TLS_PORT — one HAProxy process: PORT is one plain hop;
# TWO_HOP_PORT → an internal plain frontend → upstream is two hops; TLS_EDGE_PORT → TLS_PORT (mutual TLS with
# the same certificates as the switchyard mTLS row) → upstream is two hops with mTLS between them.
start_haproxy() {
  local port=$1 upstream=$2 two=$3 edge=$4 tls=$5 inner
  inner=$(free_port)
  command -v haproxy >/dev/null 2>&1 || mesh/mesh.sh install-haproxy
  cat >"$WORK/haproxy.cfg" <<EOF
# HAProxy for bench/run.sh: HTTP reverse proxy, keep-alive on both sides.
global
    maxconn 4096
$(haproxy_config "$port" "$upstream" "$edge" "$tls")
frontend two-hops
    bind $LOOPBACK:$two
    default_backend inner
frontend inner
    bind $LOOPBACK:$inner
    default_backend upstream
backend inner
    server inner $LOOPBACK:$inner
EOF
  start haproxy "$(command -v haproxy)" -db -f "$WORK/haproxy.cfg"
  wait_up "http://$LOOPBACK:$port/" "$LAST_PID" haproxy
}

# cpu_ticks PID... — user + system CPU time of the processes so far, in clock ticks (/proc/PID/stat 14, 15).
cpu_ticks() {
  local pid total=0 t
  for pid in "$@"; do
    t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# field LINE KEY — the value of KEY=value in the harness's summary line.
field() {
  local pair
  for pair in $1; do
    [[ ${pair%%=*} == "$2" ]] && { printf '%s' "${pair#*=}"; return; }
  done
  printf '?'
}

load() {
  "$BIN/switchyard-bench" load --url "http://$LOOPBACK:$1/" --host upstream "${@:2}"
}

ROWS=()
HANDSHAKES=()
# measure NAME PORT PID... — warm up, run flat-out, run paced; appends a table row.
measure() {
  local name=$1 port=$2 flat paced errors
  shift 2
  say "$name: warm-up 1 s, flat-out ${SECS} s ($CONNECTIONS connections), ${RATE} rps for ${SECS} s"
  load "$port" --connections "$CONNECTIONS" --duration 1 >/dev/null
  flat=$(load "$port" --connections "$CONNECTIONS" --duration "$SECS")
  echo "    flat-out: $flat"
  local ticks0 ticks1 cpu="-"
  ticks0=$(cpu_ticks "$@")
  paced=$(load "$port" --connections "$RATE_CONNECTIONS" --duration "$SECS" --rate "$RATE")
  ticks1=$(cpu_ticks "$@")
  echo "    paced:    $paced"
  errors=$(($(field "$flat" errors) + $(field "$paced" errors)))
  local mem="-" requests
  (($# > 0)) && mem=$(memory "$@")
  # The proxies' CPU (user + system) over the paced run, per request: what a hop costs below saturation.
  requests=$(field "$paced" requests)
  if (($# > 0)) && [[ $requests =~ ^[0-9]+$ ]] && ((requests > 0)); then
    cpu=$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
  fi
  ROWS+=("| $name | $(field "$flat" rps) | $(field "$paced" p50_us) | $(field "$paced" p99_us) | $(field "$paced" p999_us) | $cpu | $errors | $mem |")
}

not_available() {
  ROWS+=("| $1 | n/a | n/a | n/a | n/a | n/a | n/a | $2 |")
}

print_table() {
  {
    echo "# switchyard bench — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "$(nproc) CPUs shared by load generator, proxies and upstream; ${SECS} s per run;" \
      "flat-out with $CONNECTIONS connections; latency at $RATE rps over $RATE_CONNECTIONS" \
      "connections, measured from each request's intended send time."
    echo
    echo "| target | flat-out rps | p50 µs @${RATE}rps | p99 µs | p99.9 µs | proxy CPU µs/req @${RATE}rps | errors | proxy RSS / peak |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Mutual-TLS handshakes per second accepted (bench/handshakes.py: one Python client, a new session for every connection, 5 s):"
    echo
    echo "| server | handshakes/s |"
    echo "|---|---:|"
    printf '%s\n' "${HANDSHAKES[@]}"
  } >"$REPORT"
  echo
  cat "$REPORT"
  echo
  say "table written to $REPORT"
}

# two_hops ROW UPSTREAM plain|mtls — an egress sidecar → an ingress sidecar → UPSTREAM, measured as ROW; with
# mtls the hop between them is mutual TLS (and the ingress's handshake rate is measured too).
two_hops() {
  local row=$1 upstream=$2 mode=$3 ingress egress pid_ingress server=() client=()
  [[ $mode == mtls ]] && server=(server) && client=(client)
  ingress=$(free_port)
  egress=$(free_port)
  say "starting $row: egress $LOOPBACK:$egress → ingress $LOOPBACK:$ingress"
  if ! start_switchyard "switchyard-$mode-ingress" ingress "$ingress" "$upstream" "${server[@]}"; then
    not_available "$row" "did not start"
    return
  fi
  pid_ingress=$LAST_PID
  if start_switchyard "switchyard-$mode-egress" egress "$egress" "$ingress" "${client[@]}"; then
    measure "$row" "$egress" "$LAST_PID" "$pid_ingress"
    [[ $mode == mtls ]] && HANDSHAKES+=("| switchyard ingress (rustls, ring) | $(handshakes "$ingress") |")
    kill -TERM "$LAST_PID" 2>/dev/null || true
  else
    not_available "$row" "did not start"
  fi
  kill -TERM "$pid_ingress" 2>/dev/null || true
}

main() {
  build
  rm -rf "$WORK"
  mkdir -p "$WORK"
  local upstream hop1 hap pid1

  upstream=$(free_port)
  say "starting the bench upstream on $LOOPBACK:$upstream"
  start upstream "$BIN/switchyard-bench" upstream --listen "$LOOPBACK:$upstream"
  wait_up "http://$LOOPBACK:$upstream/" "$LAST_PID" upstream || exit 1
  measure "direct (no proxy)" "$upstream"

  hop1=$(free_port)
  say "starting one switchyard hop on $LOOPBACK:$hop1"
  if start_switchyard switchyard-1hop bench "$hop1" "$upstream"; then
    pid1=$LAST_PID
    measure "switchyard, 1 hop" "$hop1" "$pid1"
    kill -TERM "$pid1" 2>/dev/null || true
  else
    not_available "switchyard, 1 hop" "did not start"
  fi

  two_hops "switchyard, 2 hops (egress → ingress)" "$upstream" plain
  make_pki
  two_hops "switchyard, 2 hops with mTLS between them" "$upstream" mtls

  local two edge tls version
  hap=$(free_port)
  two=$(free_port)
  edge=$(free_port)
  tls=$(free_port)
  say "starting HAProxy on $LOOPBACK:$hap (1 hop), $two (2 hops), $edge (2 hops with mTLS between them)"
  if start_haproxy "$hap" "$upstream" "$two" "$edge" "$tls"; then
    version=$(haproxy -v | awk 'NR == 1 { print $3 }')
    measure "HAProxy $version" "$hap" "$LAST_PID"
    measure "HAProxy, 2 hops (one process)" "$two" "$LAST_PID"
    measure "HAProxy, 2 hops with mTLS between them (one process)" "$edge" "$LAST_PID"
    HANDSHAKES+=("| HAProxy TLS frontend (OpenSSL) | $(handshakes "$tls") |")
  else
    not_available HAProxy "did not start"
  fi

  print_table
}

main "$@"
