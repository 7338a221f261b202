#!/usr/bin/env bash
# burst.sh — `make burst-test` (part of `make test`): a traffic spike through two sidecars, as real processes.
#
# wrk holds BURST_CLIENTS (500) keep-alive connections for BURST_SECS (5) s against an egress sidecar, which
# reaches an ingress sidecar over mutual TLS (HTTP/2 by ALPN), which reaches an upstream that takes 2 ms per
# answer, under `hostConnectionPool: {maxSize: 20}`. Passes when:
#   - every answer was 2xx and no connection failed (wrk: no non-2xx, no socket errors);
#   - the upstream never had more than maxSize connections from the ingress open at once;
#   - the egress carried everything to the ingress over at most 2 connections (multiplexed HTTP/2);
#   - the queue was used (switchyard_endpoint_pool_wait_seconds_count > 0 on the ingress);
#   - after the burst the egress, which held the clients' connections, returned the freed memory
#     (switchyard_memory_trims_total ≥ 1) and its resident memory fell below half its peak within 60 s (the
#     ingress held only a few multiplexed connections: its figures are reported).
# Figures go to target/burst/report.md. SKIP_BUILD=1 uses the binaries in target/release (BIN_DIR: elsewhere,
# e.g. an older build to compare).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
CLIENTS=${BURST_CLIENTS:-500}
SECS=${BURST_SECS:-5}
MAX_SIZE=20
BIN=${BIN_DIR:-target/release}
WORK=target/burst
REPORT=$WORK/report.md
LOOPBACK=127.0.0.1

# shellcheck source=bench/lib.sh
source bench/lib.sh
LOG_NAME=burst-test
ulimit -n "$(ulimit -Hn)"

FAILURES=()
check() {
  local what=$1
  shift
  if "$@"; then
    say "ok: $what"
  else
    say "FAILED: $what"
    FAILURES+=("$what")
  fi
}

# metric ADMIN_PORT FAMILY — the sum of a family's samples on a sidecar.
metric() {
  curl -fsS -H "Host: $LOOPBACK:$1" "http://$LOOPBACK:$1/metrics" |
    awk -v f="$2" '$1 == f || index($1, f "{") == 1 { sum += $2 } END { printf "%d", sum }'
}

main() {
  ensure_packages wrk wrk wrk
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    say "building (cargo build --release -p switchyard -p switchyard-bench)"
    cargo build --release --bins -p switchyard -p switchyard-bench
  fi
  rm -rf "$WORK"
  mkdir -p "$WORK"
  local upstream ingress egress pid_in pid_eg admin_in admin_eg
  upstream=$(free_port)
  start upstream "$BIN/switchyard-bench" upstream --listen "$LOOPBACK:$upstream" --delay-ms 2
  wait_up "http://$LOOPBACK:$upstream/" "$LAST_PID" upstream || die "the upstream did not start"
  make_pki
  ingress=$(free_port)
  egress=$(free_port)
  start_switchyard burst-ingress ingress "$ingress" "$upstream" server "{maxSize: $MAX_SIZE}" ||
    die "the ingress sidecar did not start"
  pid_in=$LAST_PID admin_in=$LAST_ADMIN
  start_switchyard burst-egress egress "$egress" "$ingress" client || die "the egress sidecar did not start"
  pid_eg=$LAST_PID admin_eg=$LAST_ADMIN

  say "$CLIENTS concurrent keep-alive clients for ${SECS} s: wrk → egress → (mTLS) → ingress → upstream"
  local peak_in peak_eg now out
  peak_in=$(rss_kib "$pid_in") peak_eg=$(rss_kib "$pid_eg")
  wrk -t 2 -c "$CLIENTS" -d "${SECS}s" --timeout 10s --latency -H 'Host: upstream' "http://$LOOPBACK:$egress/" \
    >"$WORK/wrk.out" 2>&1 &
  local wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null; do
    now=$(rss_kib "$pid_in") && ((now > peak_in)) && peak_in=$now
    now=$(rss_kib "$pid_eg") && ((now > peak_eg)) && peak_eg=$now
    sleep 0.2
  done
  wait "$wrk_pid" || die "wrk failed: $(cat "$WORK/wrk.out")"
  out=$(cat "$WORK/wrk.out")
  sed 's/^/    | /' "$WORK/wrk.out"

  local requests non2xx errors accepted peak to_ingress waited
  requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  non2xx=$(awk -F': ' '/Non-2xx or 3xx responses/ { print $2 }' <<<"$out")
  errors=$(awk '/Socket errors/ { print }' <<<"$out")
  read -r accepted peak < <(curl -fsS "http://$LOOPBACK:$upstream/__connections")
  # Not the connections of this question and of the start-up check.
  peak=$((peak - 1)) accepted=$((accepted - 2))
  to_ingress=$(metric "$admin_eg" switchyard_upstream_connects_total)
  waited=$(metric "$admin_in" switchyard_endpoint_pool_wait_seconds_count)
  check "requests were served (${requests:-0})" test "${requests:-0}" -gt 0
  check "no non-2xx answers (${non2xx:-0})" test "${non2xx:-0}" -eq 0
  check "no socket errors (${errors:-none})" test -z "$errors"
  check "the upstream had at most $peak connections open at once (maxSize $MAX_SIZE; $accepted accepted in all)" \
    test "$peak" -le "$MAX_SIZE"
  check "the egress reached the ingress over $to_ingress connection(s) (HTTP/2), at most 2" test "$to_ingress" -le 2
  check "requests queued for a connection ($waited)" test "$waited" -gt 0

  say "waiting up to 60 s for the egress to give back the burst's memory"
  local deadline=$((SECONDS + 60)) rss_in rss_eg trims_eg
  while :; do
    rss_eg=$(rss_kib "$pid_eg")
    trims_eg=$(metric "$admin_eg" switchyard_memory_trims_total)
    if ((trims_eg > 0 && rss_eg * 2 < peak_eg)) || ((SECONDS > deadline)); then
      break
    fi
    sleep 1
  done
  rss_in=$(rss_kib "$pid_in")
  check "the egress trimmed ($trims_eg) and fell from $((peak_eg / 1024)) to $((rss_eg / 1024)) MiB" \
    test "$trims_eg" -gt 0 -a $((rss_eg * 2)) -lt "$peak_eg"

  {
    echo "# burst test — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "$CLIENTS keep-alive clients for ${SECS} s → egress → mTLS → ingress (maxSize $MAX_SIZE) → upstream (2 ms)."
    echo
    echo "| requests | non-2xx | socket errors | upstream connections (most at once) | egress→ingress connections | ingress RSS peak → after | egress RSS peak → after |"
    echo "|---:|---:|---|---:|---:|---|---|"
    echo "| ${requests:-0} | ${non2xx:-0} | ${errors:-none} | $accepted ($peak) | $to_ingress | $((peak_in / 1024)) → $((rss_in / 1024)) MiB | $((peak_eg / 1024)) → $((rss_eg / 1024)) MiB |"
  } >"$REPORT"
  cat "$REPORT"
  if ((${#FAILURES[@]})); then
    die "${#FAILURES[@]} check(s) failed: ${FAILURES[*]}"
  fi
  say "burst test passed"
}

main "$@"
