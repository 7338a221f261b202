#!/usr/bin/env bash
# connections.sh — `make bench-connections` (and the second part of `make bench`): thousands of concurrent
# keep-alive clients at once, through one switchyard hop, through the mesh's two sidecar hops (mutual TLS
# between them), and through HAProxy the same two ways, side by side in one run.
#
# The upstream stands in for an app: it takes APP_DELAY_MS to answer each request, so a burst really is
# concurrent and the proxies must queue or open connections. For each target and each client count, wrk holds
# that many keep-alive connections for CONN_SECS; the table gives wrk's non-2xx answers and socket errors, its
# p99, the proxies' resident memory idle before, at its highest during (sampled every 0.2 s) and CONN_AFTER
# seconds after the burst, and how many connections the upstream accepted from the proxy.
#
# Environment: CONN_COUNTS="2000 10000", CONN_SECS=10, CONN_AFTER=30, APP_DELAY_MS=2,
# CONN_TARGETS="switchyard mesh haproxy" (which rows), SKIP_BUILD=1 (use the binaries in target/release).
# Every process may hold at most the shell's open-file limit; HAProxy sizes its maxconn from it (its default).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
COUNTS=${CONN_COUNTS:-2000 10000}
SECS=${CONN_SECS:-10}
AFTER=${CONN_AFTER:-30}
APP_DELAY_MS=${APP_DELAY_MS:-2}
TARGETS=${CONN_TARGETS:-switchyard mesh haproxy}
BIN=target/release
WORK=target/bench/connections
REPORT=target/bench/connections.md
LOOPBACK=127.0.0.1

# shellcheck source=bench/lib.sh
source bench/lib.sh

# Every process here holds thousands of sockets: as many as the hard limit allows.
ulimit -n "$(ulimit -Hn)"

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# upstream_connections — "ACCEPTED PEAK": connections the upstream accepted so far, and the most open at once
# since the last call.
upstream_connections() { curl -fsS "http://$LOOPBACK:$UPSTREAM/__connections" 2>/dev/null || echo "0 0"; }

ROWS=()
# burst NAME PORT PID... — for each client count: wrk, memory while it runs and after; appends table rows.
burst() {
  local name=$1 port=$2 n out idle peak now sampler before after opened non2xx errs p99 reqs
  shift 2
  for n in $COUNTS; do
    idle=$(rss_kib "$@")
    read -r before _ < <(upstream_connections)
    say "$name: $n concurrent clients for ${SECS} s (wrk)"
    wrk -t 2 -c "$n" -d "${SECS}s" --timeout 10s --latency -H 'Host: upstream' "http://$LOOPBACK:$port/" \
      >"$WORK/wrk.out" 2>&1 &
    sampler=$!
    peak=$idle
    while kill -0 "$sampler" 2>/dev/null; do
      now=$(rss_kib "$@")
      ((now > peak)) && peak=$now
      sleep 0.2
    done
    wait "$sampler" || true
    out=$(cat "$WORK/wrk.out")
    read -r after opened < <(upstream_connections)
    # Less this question's own connection.
    opened="$((after - before - 1)) ($((opened - 1)))"
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    non2xx=$(awk -F': ' '/Non-2xx or 3xx responses/ { print $2 }' <<<"$out")
    errs=$(awk '/Socket errors/ { gsub(",", ""); print "connect " $4 ", read " $6 ", write " $8 ", timeout " $10 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    say "  $name: ${reqs:-?} requests, non-2xx ${non2xx:-0}, ${errs:-no socket errors}, p99 ${p99:-?}; waiting ${AFTER} s"
    sleep "$AFTER"
    ROWS+=("| $name | $n | ${reqs:-?} | ${non2xx:-0} | ${errs:-none} | ${p99:-?} | $(mib "$idle") | $(mib "$peak") | $(mib "$(rss_kib "$@")") | $opened |")
  done
}

# start_haproxy PORT EDGE TLS — HAProxy with its default connection limit (sized from the open-file limit):
# PORT is one hop to the upstream; EDGE → TLS (mutual TLS, the mesh's certificates) → upstream is two hops.
start_haproxy() {
  local port=$1 edge=$2 tls=$3
  mesh/mesh.sh install-haproxy
  cat >"$WORK/haproxy.cfg" <<EOF
# HAProxy for bench/connections.sh: HTTP reverse proxy, keep-alive on both sides.
$(haproxy_config "$port" "$UPSTREAM" "$edge" "$tls")
EOF
  start haproxy "$(command -v haproxy)" -db -f "$WORK/haproxy.cfg"
  wait_up "http://$LOOPBACK:$port/" "$LAST_PID" haproxy
}

print_table() {
  {
    echo "# switchyard bench: concurrent connections — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "$(nproc) CPUs shared by wrk, the proxies and the upstream (which answers after ${APP_DELAY_MS} ms)." \
      "wrk holds N keep-alive connections for ${SECS} s; memory is the proxy processes' resident set, summed" \
      "(idle before the burst, highest while it ran, and ${AFTER} s after it ended)."
    echo
    echo "| target | clients | requests | non-2xx | socket errors | p99 | RSS idle MiB | RSS peak MiB | RSS ${AFTER} s after MiB | upstream connections opened (most open at once) |"
    echo "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
  } >"$REPORT"
  echo
  cat "$REPORT"
  echo
  say "table written to $REPORT"
}

main() {
  ensure_packages wrk wrk wrk
  build
  rm -rf "$WORK"
  mkdir -p "$WORK"
  UPSTREAM=$(free_port)
  say "starting the bench upstream on $LOOPBACK:$UPSTREAM (answers after ${APP_DELAY_MS} ms)"
  start upstream "$BIN/switchyard-bench" upstream --listen "$LOOPBACK:$UPSTREAM" --delay-ms "$APP_DELAY_MS"
  wait_up "http://$LOOPBACK:$UPSTREAM/" "$LAST_PID" upstream || exit 1

  local hop ingress egress pid_ingress
  hop=$(free_port)
  if [[ " $TARGETS " == *" switchyard "* ]] && start_switchyard switchyard-1hop bench "$hop" "$UPSTREAM"; then
    burst "switchyard, 1 hop" "$hop" "$LAST_PID"
    kill -TERM "$LAST_PID" 2>/dev/null || true
  fi

  make_pki
  ingress=$(free_port)
  egress=$(free_port)
  if [[ " $TARGETS " == *" mesh "* ]] && start_switchyard switchyard-ingress ingress "$ingress" "$UPSTREAM" server; then
    pid_ingress=$LAST_PID
    if start_switchyard switchyard-egress egress "$egress" "$ingress" client; then
      burst "switchyard mesh, 2 hops (mTLS)" "$egress" "$LAST_PID" "$pid_ingress"
      kill -TERM "$LAST_PID" 2>/dev/null || true
    fi
    kill -TERM "$pid_ingress" 2>/dev/null || true
  fi

  local port edge tls version
  port=$(free_port)
  edge=$(free_port)
  tls=$(free_port)
  if [[ " $TARGETS " == *" haproxy "* ]] && start_haproxy "$port" "$edge" "$tls"; then
    version=$(haproxy -v | awk 'NR == 1 { print $3 }')
    burst "HAProxy $version, 1 hop" "$port" "$LAST_PID"
    burst "HAProxy $version, 2 hops (mTLS, one process)" "$edge" "$LAST_PID"
  fi
  print_table
}

main "$@"
