#!/usr/bin/env bash
# run.sh — `make bench`, first part: what a switchyard hop costs, next to no proxy, HAProxy and nginx, measured
# so that a skeptic can check it: an independent load generator (wrk) for throughput, an open-loop harness for
# latency at fixed rates, the proxies' own CPU time and context switches per request from /proc, interleaved
# rounds reported as median [min–max], and a pass with the proxies on their own CPU.
#
# Targets, all on 127.0.0.1 with free ports, started once per pass and kept running through all its rounds:
#   direct                the bench upstream (`switchyard-bench upstream`, `200 ok`), no proxy; always measured
#   switchyard            one switchyard hop, minimal config (one router, one dentry)
#   switchyard-threads    the same with SWITCHYARD_WORKER_THREADS=<CPUs> (a work-stealing pool instead of the
#                         default single thread); unpinned pass only
#   switchyard-mesh       one switchyard hop configured as the mesh sidecar's egress router (access log, caller's
#                         context, EWMA, failure accrual, timeouts, hedging, budgeted retries), plaintext upstream
#   switchyard-2hop       egress sidecar → ingress sidecar → upstream, plaintext
#   switchyard-2hop-mtls  the same with mutual TLS between the two sidecars (the mesh's hop)
#   haproxy               HAProxy (Debian's), one hop
#   haproxy-2hop-mtls     HAProxy, two hops with mutual TLS between them, in the same process
#   nginx                 nginx (Debian's), one hop, keep-alive to the upstream
#   switchyard-dtab       no row of its own: `switchyard` flat-out while its dtab is replaced every 100 ms
# wrk, HAProxy and nginx are installed with apt-get when missing (wrk must be; a proxy that cannot be installed
# or started is reported as n/a).
#
# Each round measures every target:
#   flat-out    wrk -t1 -c BENCH_CONNECTIONS for BENCH_SECS: requests/s, p99, non-2xx answers + socket errors;
#   @RATE       `switchyard-bench load`, open loop (latency from each request's intended send time):
#               BENCH_REQUESTS requests at BENCH_RATE over BENCH_RATE_CONNECTIONS connections — p50/p99/p99.9;
#               over exactly that run the proxy processes' CPU time (user + system, /proc/PID/stat) and context
#               switches (every thread's, /proc/PID/task/*/status) per request; after it their VmRSS;
#   @HIGH_RATE  the same with BENCH_HIGH_REQUESTS at BENCH_HIGH_RATE over BENCH_HIGH_CONNECTIONS connections.
# In the first round each measurement is preceded by a 1 s wrk warm-up. "Added" latency is the row's minus
# direct's in the same round. Round r (from 0) starts at target r mod N and every other round goes backwards, so
# no target always follows the same neighbour or always runs at the same point of a round.
#
# Passes (BENCH_PIN): pinned — every proxy under `taskset -c` the second CPU this script may use; the upstream,
# the load generators and this script on the first; HAProxy with `nbthread 1`, nginx with one worker (switchyard
# serves on one thread unless SWITCHYARD_WORKER_THREADS says otherwise). Unpinned — nothing pinned, every proxy
# with its default threads or workers (HAProxy and nginx: one per CPU; switchyard: one, and the
# switchyard-threads row with one per CPU). Every process is restarted between passes, and all are stopped on exit.
#
# Output: target/bench/latest.md, also printed — machine facts, per pass a table of medians [ranges] and one of
# absolute latencies, the dtab-swap runs, mutual-TLS handshakes per second (bench/handshakes.py), every round's
# raw figures and a few "Goals" figures. In target/bench/run: results.tsv (every figure), wrk.log and load.log
# (every wrk output and harness summary line), the configs and every process's log.
#
# Environment (default):
#   BENCH_ROUNDS=3              interleaved rounds per pass
#   BENCH_SECS=5                seconds of each wrk run (flat-out, dtab swaps)
#   BENCH_CONNECTIONS=32        wrk's connections
#   BENCH_RATE=1000             requests/s of the first fixed-rate run …
#   BENCH_REQUESTS=10000        … how many requests it sends (it lasts BENCH_REQUESTS / BENCH_RATE seconds) …
#   BENCH_RATE_CONNECTIONS=8    … over how many connections
#   BENCH_HIGH_RATE=10000       the same for the second fixed-rate run
#   BENCH_HIGH_REQUESTS=30000
#   BENCH_HIGH_CONNECTIONS=32
#   BENCH_PIN=both              both | yes (pinned pass only) | no (unpinned pass only)
#   BENCH_LONG_SECS=0           > 0: at the end, the mesh-config sidecar at BENCH_RATE for that many seconds, its
#                               resident memory sampled every 10 s
#   BENCH_TARGETS=(all)         the targets to measure, by the names above, separated by spaces
#   SKIP_BUILD=1                use the binaries in target/release (otherwise: cargo build --release first)
# With the defaults it takes about 18 minutes on 2 CPUs (20 with `make bench`'s 2-minute memory run): about 19 s
# per target and round (5 s flat-out, 10 s at 1,000/s, 3 s at 10,000/s), 8 targets (9 unpinned) × 3 rounds × 2
# passes, plus warm-ups, dtab swaps and handshakes; it says its own estimate when it starts.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
RATE=${BENCH_RATE:-1000}
REQUESTS=${BENCH_REQUESTS:-10000}
RATE_CONNECTIONS=${BENCH_RATE_CONNECTIONS:-8}
HIGH_RATE=${BENCH_HIGH_RATE:-10000}
HIGH_REQUESTS=${BENCH_HIGH_REQUESTS:-30000}
HIGH_CONNECTIONS=${BENCH_HIGH_CONNECTIONS:-32}
PIN=${BENCH_PIN:-both}
LONG_SECS=${BENCH_LONG_SECS:-0}
BIN=target/release
WORK=target/bench/run
REPORT=target/bench/latest.md
RESULTS=$WORK/results.tsv
LOOPBACK=127.0.0.1
# How often the dtab-swap run replaces the dtab.
SWAP_MS=100

LOG_NAME=bench
# shellcheck source=bench/lib.sh
source bench/lib.sh

ALL_TARGETS=(direct switchyard switchyard-threads switchyard-mesh switchyard-2hop switchyard-2hop-mtls haproxy haproxy-2hop-mtls nginx
  switchyard-dtab)
declare -A TITLE=(
  [direct]="direct (no proxy)"
  [switchyard]="switchyard, 1 hop (minimal config)"
  [switchyard-threads]="switchyard, 1 hop (minimal config), $(nproc) worker threads"
  [switchyard-mesh]="switchyard, 1 hop (mesh sidecar config)"
  [switchyard-2hop]="switchyard, 2 hops (egress → ingress)"
  [switchyard-2hop-mtls]="switchyard, 2 hops, mTLS between them"
  [haproxy]="HAProxy, 1 hop"
  [haproxy-2hop-mtls]="HAProxy, 2 hops, mTLS between them (one process)"
  [nginx]="nginx, 1 hop"
  [switchyard-dtab]="switchyard, 1 hop, dtab replaced every ${SWAP_MS} ms"
)
# The row each row's "× HAProxy" ratios divide by.
declare -A REFERENCE=([switchyard-2hop-mtls]=haproxy-2hop-mtls [haproxy-2hop-mtls]=haproxy-2hop-mtls)
# Every figure measured: VAL[PASS|ROUND|TARGET|METRIC] (also appended to $RESULTS).
declare -A VAL=()
# This pass's targets: where they listen, their process ids (nginx: the master), why one is n/a.
declare -A PORT=() PIDS=() NOTE=()
# Facts shown in the report, per pass: NOTES[PASS|TARGET] (why n/a), PROCS[PASS] (processes and their CPUs).
declare -A NOTES=() PROCS=()
HANDSHAKES=()
PASSES=()
LONG_SERIES=""
PASS=""
ROUND=0
UPSTREAM=""
UPSTREAM_PID=""
SWAP_ADMIN=""
TLS_INGRESS=""
TLS_HAPROXY=""

# positive_integer NAME VALUE — dies unless VALUE is a whole number above 0.
positive_integer() {
  if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 == 0)); then die "$1 must be a whole number above 0 (is '$2')"; fi
}

# check_settings — validates the environment and the target list (VISITS: what each round visits).
check_settings() {
  local name variable target
  for name in BENCH_ROUNDS:ROUNDS BENCH_SECS:SECS BENCH_CONNECTIONS:CONNECTIONS BENCH_RATE:RATE \
    BENCH_REQUESTS:REQUESTS BENCH_RATE_CONNECTIONS:RATE_CONNECTIONS BENCH_HIGH_RATE:HIGH_RATE \
    BENCH_HIGH_REQUESTS:HIGH_REQUESTS BENCH_HIGH_CONNECTIONS:HIGH_CONNECTIONS; do
    variable=${name#*:}
    positive_integer "${name%%:*}" "${!variable}"
  done
  [[ $LONG_SECS =~ ^[0-9]+$ ]] || die "BENCH_LONG_SECS must be a whole number (is '$LONG_SECS')"
  case $PIN in
    both) PASSES=(pinned unpinned) ;;
    yes) PASSES=(pinned) ;;
    no) PASSES=(unpinned) ;;
    *) die "BENCH_PIN must be both, yes or no (is '$PIN')" ;;
  esac
  VISITS=(direct)
  for target in ${BENCH_TARGETS:-${ALL_TARGETS[*]}}; do
    [[ -n ${TITLE[$target]:-} ]] || die "BENCH_TARGETS: unknown target '$target' (known: ${ALL_TARGETS[*]})"
    [[ $target == direct ]] || VISITS+=("$target")
  done
}

# selected TARGET — whether this run measures TARGET.
selected() {
  local target
  for target in "${VISITS[@]}"; do [[ $target == "$1" ]] && return 0; done
  return 1
}

# allowed_cpus — the CPUs this script may run on, one a line (from Cpus_allowed_list, e.g. "0-1,4").
allowed_cpus() {
  awk -F'[:,]' '/^Cpus_allowed_list:/ {
    for (i = 2; i <= NF; i++) {
      n = split($i, r, "-"); lo = r[1] + 0; hi = (n > 1 ? r[2] : r[1]) + 0
      for (c = lo; c <= hi; c++) print c
    }
  }' /proc/self/status
}

# ---------------------------------------------------------------------------
# Measuring

# record TARGET METRIC VALUE — one figure of this pass and round (ignored when VALUE is not a number).
record() {
  [[ $3 =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || return 0
  VAL["$PASS|$ROUND|$1|$2"]=$3
  printf '%s\t%s\t%s\t%s\t%s\n' "$PASS" "$ROUND" "$1" "$2" "$3" >>"$RESULTS"
}

# field LINE KEY — the value of KEY=value in the harness's summary line ("?" when absent).
field() {
  local pair
  for pair in $1; do
    [[ ${pair%%=*} == "$2" ]] && {
      printf '%s' "${pair#*=}"
      return
    }
  done
  printf '?'
}

# cpu_ticks PID... — user + system CPU time of the processes so far, in clock ticks (/proc/PID/stat 14, 15: the
# whole process, every thread).
cpu_ticks() {
  local pid total=0 t
  for pid in "$@"; do
    t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# thread_switches PID... — "TASK COUNT" for every thread of the processes: voluntary + involuntary context
# switches so far (/proc/PID/task/TID/status; /proc/PID/status alone counts the main thread only).
thread_switches() {
  local pid
  for pid in "$@"; do
    grep -sH 'voluntary_ctxt_switches:' /proc/"$pid"/task/*/status || true
  done | awk -F: '{ n[$1] += $3 } END { for (t in n) print t, n[t] }'
}

# switch_delta BEFORE AFTER — context switches between two thread_switches snapshots (a thread that appeared in
# between counts from 0; one that ended in between is lost with its count).
switch_delta() {
  awk 'NR == FNR { before[$1] = $2; next } { d += $2 - ($1 in before ? before[$1] : 0) } END { print d + 0 }' \
    <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# proxy_pids TARGET — the proxy processes of TARGET (nginx: the master and its workers; direct: none).
proxy_pids() {
  local pid pids=${PIDS[$1]:-}
  if [[ $1 == nginx && -n $pids ]]; then
    for pid in $(pgrep -P "$pids" || true); do pids+=" $pid"; done
  fi
  printf '%s' "$pids"
}

# wrk_run PORT SECS — wrk flat-out against PORT; prints "RPS P99_US NON2XX SOCKET_ERRORS" ("?" when unparsed).
wrk_run() {
  local out
  out=$("${LOAD_PREFIX[@]}" wrk -t1 -c"$CONNECTIONS" -d"$2s" --latency -H 'Host: upstream' \
    "http://$LOOPBACK:$1/" 2>&1) || true
  printf '== %s round %s, port %s\n%s\n' "$PASS" "$ROUND" "$1" "$out" >>"$WORK/wrk.log"
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0
      if (v ~ /ms$/) return v * 1000
      if (v ~ /m$/) return v * 60e6
      if (v ~ /s$/) return v * 1e6
      return "?"
    }
    /^Requests\/sec:/ { rps = sprintf("%.0f", $2) }
    $1 == "99%" { p99 = sprintf("%.0f", us($2)) }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); sockets = $4 + $6 + $8 + $10 }
    END { printf "%s %s %d %d\n", rps == "" ? "?" : rps, p99 == "" ? "?" : p99, non2xx, sockets }
  ' <<<"$out"
}

# warm_up PORT — 1 s of wrk against PORT, in the first round only.
warm_up() {
  ((ROUND == 1)) || return 0
  "${LOAD_PREFIX[@]}" wrk -t1 -c"$CONNECTIONS" -d1s -H 'Host: upstream' "http://$LOOPBACK:$1/" >/dev/null 2>&1 || true
}

# paced TARGET PORT RATE REQUESTS CONNECTIONS PREFIX PID... — the harness at RATE until REQUESTS were due, with
# the CPU time and context switches of PID... over exactly that run; records PREFIX-named metrics and sets LINE
# to the harness's summary.
paced() {
  local target=$1 port=$2 rate=$3 requests=$4 connections=$5 key=$6 duration ticks0 ticks1 ctx0 ctx1 n
  shift 6
  duration=$(awk -v n="$requests" -v r="$rate" 'BEGIN { printf "%.3f", n / r }')
  # Let the proxies finish with the previous run's connections outside this run's CPU window.
  sleep 0.3
  ticks0=$(cpu_ticks "$@")
  ctx0=$(thread_switches "$@")
  LINE=$("${LOAD_PREFIX[@]}" "$BIN/switchyard-bench" load --url "http://$LOOPBACK:$port/" --host upstream \
    --connections "$connections" --duration "$duration" --rate "$rate" 2>&1 | tail -n 1) || true
  ticks1=$(cpu_ticks "$@")
  ctx1=$(thread_switches "$@")
  echo "$PASS round $ROUND $target @$rate/s: $LINE" >>"$WORK/load.log"
  record "$target" "${key}p50" "$(field "$LINE" p50_us)"
  record "$target" "${key}p99" "$(field "$LINE" p99_us)"
  record "$target" "${key}p999" "$(field "$LINE" p999_us)"
  record "$target" "${key}rps" "$(field "$LINE" rps)"
  record "$target" "${key}errors" "$(field "$LINE" errors)"
  n=$(field "$LINE" requests)
  if (($# > 0)) && [[ $n =~ ^[0-9]+$ ]] && ((n > 0)); then
    record "$target" "${key}cpu" "$(awk -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v n="$n" \
      'BEGIN { printf "%.2f", t / hz * 1e6 / n }')"
    record "$target" "${key}ctx" "$(awk -v d="$(switch_delta "$ctx0" "$ctx1")" -v n="$n" \
      'BEGIN { printf "%.3f", d / n }')"
  fi
}

# mib KIB — KIB in MiB, one decimal.
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# value TARGET METRIC — this pass and round's figure ("?" when not measured).
value() { printf '%s' "${VAL["$PASS|$ROUND|$1|$2"]:-?}"; }

# measure TARGET — one round's flat-out, @RATE and @HIGH_RATE runs against TARGET, and its memory.
measure() {
  local target=$1 port=${PORT[$1]} pids=() rps p99 non2xx sockets
  read -ra pids <<<"$(proxy_pids "$target")"
  warm_up "$port"
  read -r rps p99 non2xx sockets < <(wrk_run "$port" "$SECS")
  record "$target" wrk_rps "$rps"
  record "$target" wrk_p99 "$p99"
  record "$target" wrk_errors $((non2xx + sockets))
  warm_up "$port"
  paced "$target" "$port" "$RATE" "$REQUESTS" "$RATE_CONNECTIONS" "" "${pids[@]}"
  ((${#pids[@]} == 0)) || record "$target" rss "$(mib "$(rss_kib "${pids[@]}")")"
  warm_up "$port"
  paced "$target" "$port" "$HIGH_RATE" "$HIGH_REQUESTS" "$HIGH_CONNECTIONS" h "${pids[@]}"
  printf '    %-50s wrk %s/s p99 %s µs, %s errors | ' "${TITLE[$target]}" "$rps" "$p99" $((non2xx + sockets))
  printf '@%s: p50 %s p99 %s µs, %s µs CPU, %s cs, %s MiB, %s errors | ' "$RATE" "$(value "$target" p50)" \
    "$(value "$target" p99)" "$(value "$target" cpu)" "$(value "$target" ctx)" "$(value "$target" rss)" \
    "$(value "$target" errors)"
  printf '@%s: p50 %s p99 %s µs at %s/s, %s µs CPU, %s errors\n' "$HIGH_RATE" "$(value "$target" hp50)" \
    "$(value "$target" hp99)" "$(value "$target" hrps)" "$(value "$target" hcpu)" "$(value "$target" herrors)"
}

# put_dtab ADMIN FILE — PUTs FILE as the `bench` router's dtab; prints the HTTP status (000: no answer).
put_dtab() {
  curl -sS -o /dev/null -w '%{http_code}' --max-time 1 -X PUT -H 'Content-Type: application/dtab' \
    --data-binary "@$2" "http://$LOOPBACK:$1/dtab/bench" 2>/dev/null || true
}

# swap_run ROUTER — wrk flat-out against the minimal switchyard hop for BENCH_SECS while bench/swap_dtabs.py (one
# process, one kept-alive connection, on the load's CPU) PUTs dtab-0 and dtab-1 in turn to ROUTER's dtab every
# SWAP_MS; prints "RPS P99 ERRORS SUCCEEDED SENT".
swap_run() {
  local swapper rps p99 non2xx sockets ok sent
  "${LOAD_PREFIX[@]}" python3 bench/swap_dtabs.py "$SWAP_ADMIN" "$1" "$SECS" "$SWAP_MS" "$WORK/dtab-0" "$WORK/dtab-1" \
    >"$WORK/swaps" &
  swapper=$!
  STARTED_PIDS+=("$swapper")
  read -r rps p99 non2xx sockets < <(wrk_run "${PORT[switchyard-dtab]}" "$SECS")
  wait "$swapper" || true
  read -r ok sent <"$WORK/swaps" || { ok=0 sent=0; }
  echo "$rps $p99 $((non2xx + sockets)) $ok $sent"
}

# measure_dtab_swaps — the minimal switchyard hop flat-out twice: while its `bench` router's dtab is replaced every
# SWAP_MS, and, as the control, while the same PUTs go to a router it does not have (404: the same admin requests
# and the same client beside wrk, no dtab change) — so the difference is what replacing the dtab costs.
measure_dtab_swaps() {
  local rps p99 errors ok sent c_rps c_p99 c_errors c_ok
  printf '/svc/* => /$/inet/%s/%s;\n' "$LOOPBACK" "$UPSTREAM" >"$WORK/dtab-0"
  printf '/svc/* => /$/inet/%s/%s;\n/other => /$/inet/%s/%s;\n' "$LOOPBACK" "$UPSTREAM" "$LOOPBACK" "$UPSTREAM" \
    >"$WORK/dtab-1"
  warm_up "${PORT[switchyard-dtab]}"
  read -r c_rps c_p99 c_errors c_ok _ < <(swap_run no-such-router)
  read -r rps p99 errors ok sent < <(swap_run bench)
  [[ $(put_dtab "$SWAP_ADMIN" "$WORK/dtab-0") == 204 ]] || warn "could not restore the switchyard hop's dtab"
  ((ok * SWAP_MS >= SECS * 900)) ||
    warn "only $ok dtab PUTs of $sent succeeded in $SECS s (expected $((SECS * 1000 / SWAP_MS)))"
  ((c_ok == 0)) || warn "the control run's PUTs to a router that does not exist succeeded ($c_ok)"
  record switchyard-dtab wrk_rps "$rps"
  record switchyard-dtab wrk_p99 "$p99"
  record switchyard-dtab wrk_errors "$errors"
  record switchyard-dtab control_rps "$c_rps"
  record switchyard-dtab control_p99 "$c_p99"
  record switchyard-dtab control_errors "$c_errors"
  record switchyard-dtab puts_ok "$ok"
  record switchyard-dtab puts "$sent"
  printf '    %-50s wrk %s/s p99 %s µs, %s errors (control: %s/s p99 %s µs, %s errors) | %s of %s PUTs 204\n' \
    "${TITLE[switchyard-dtab]}" "$rps" "$p99" "$errors" "$c_rps" "$c_p99" "$c_errors" "$ok" "$sent"
}

# cpu_jiffies — "STEAL TOTAL" of the whole machine so far (/proc/stat).
cpu_jiffies() { awk '$1 == "cpu" { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

# round_order ROUND — the targets in ROUND's order (ROUND from 1): from target (ROUND - 1) mod N, forwards in odd
# rounds and backwards in even ones.
round_order() {
  local r=$(($1 - 1)) n=${#VISITS[@]} k
  for ((k = 0; k < n; k++)); do
    if ((r % 2 == 0)); then
      printf '%s\n' "${VISITS[$(((r + k) % n))]}"
    else
      printf '%s\n' "${VISITS[$((((r - k) % n + n) % n))]}"
    fi
  done
}

# pids_alive TARGET — every process of TARGET (and the upstream) still runs.
pids_alive() {
  local pid
  for pid in ${PIDS[$1]:-} $UPSTREAM_PID; do kill -0 "$pid" 2>/dev/null || return 1; done
}

# visit TARGET — this round's measurements of TARGET, unless it is n/a or one of its processes stopped.
visit() {
  local target=$1
  [[ -z ${NOTE[$target]:-} ]] || return 0
  if ! pids_alive "$target"; then
    NOTE[$target]="a process stopped during round $ROUND"
    NOTES["$PASS|$target"]=${NOTE[$target]}
    warn "${TITLE[$target]}: ${NOTE[$target]}; not measured from now on"
    return 0
  fi
  if [[ $target == switchyard-dtab ]]; then measure_dtab_swaps; else measure "$target"; fi
}

# ---------------------------------------------------------------------------
# Starting and stopping the targets

# not_available TARGET REASON — TARGET is not measured in this pass, for REASON.
not_available() {
  NOTE[$1]=$2
  NOTES["$PASS|$1"]=$2
  warn "${TITLE[$1]}: $2"
}

# start_haproxy PORT EDGE TLS — one HAProxy process: PORT is one hop to the upstream, EDGE → TLS (mutual TLS with
# the certificates of the switchyard mTLS row) → upstream two hops; `nbthread 1` when pinned. Sets WHY on failure.
start_haproxy() {
  local port=$1 edge=$2 tls=$3 threads=""
  if ! command -v haproxy >/dev/null 2>&1 && ! mesh/mesh.sh install-haproxy; then
    WHY="HAProxy cannot be installed"
    return 1
  fi
  [[ $PASS == pinned ]] && threads="    nbthread 1"
  cat >"$WORK/$PASS-haproxy.cfg" <<EOF
# HAProxy for bench/run.sh ($PASS): HTTP reverse proxy, keep-alive on both sides.
global
    maxconn 4096
$threads
$(haproxy_config "$port" "$UPSTREAM" "$edge" "$tls")
EOF
  WHY="did not start"
  start "$PASS-haproxy" "${PROXY_PREFIX[@]}" "$(command -v haproxy)" -db -f "$WORK/$PASS-haproxy.cfg"
  wait_up "http://$LOOPBACK:$port/" "$LAST_PID" "$PASS-haproxy"
}

# start_nginx PORT — nginx in the foreground with its own prefix, config, pid file, temporary paths and error log
# under $WORK/PASS-nginx: one hop to the upstream over up to 32 idle keep-alive connections, no access log;
# one worker when pinned, one per CPU otherwise. Sets WHY on failure.
start_nginx() {
  local port=$1 dir=$REPO_ROOT/$WORK/$PASS-nginx workers=auto
  if ! command -v nginx >/dev/null 2>&1 && ! (ensure_packages nginx nginx --no-install-recommends nginx); then
    WHY="nginx cannot be installed"
    return 1
  fi
  [[ $PASS == pinned ]] && workers=1
  nginx_config "$dir" "$port" "$UPSTREAM" "$workers" "bench/run.sh ($PASS)"
  WHY="did not start"
  start "$PASS-nginx" "${PROXY_PREFIX[@]}" "$(command -v nginx)" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
    -g 'daemon off;'
  wait_up "http://$LOOPBACK:$port/" "$LAST_PID" "$PASS-nginx"
}

# two_hops TARGET plain|mtls — an egress sidecar → an ingress sidecar → the upstream, mutual TLS between them with
# mtls; sets PORT and PIDS of TARGET (and TLS_INGRESS with mtls), or its NOTE.
two_hops() {
  local target=$1 mode=$2 ingress egress pid_ingress server=() client=()
  [[ $mode == mtls ]] && server=(server) && client=(client)
  ingress=$(free_port)
  egress=$(free_port)
  if ! start_switchyard "$PASS-$target-ingress" ingress "$ingress" "$UPSTREAM" "${server[@]}"; then
    not_available "$target" "did not start"
    return
  fi
  pid_ingress=$LAST_PID
  if ! start_switchyard "$PASS-$target-egress" egress "$egress" "$ingress" "${client[@]}"; then
    not_available "$target" "did not start"
    return
  fi
  PORT[$target]=$egress
  PIDS[$target]="$LAST_PID $pid_ingress"
  [[ $mode == mtls ]] && TLS_INGRESS=$ingress
  return 0
}

# start_targets — the upstream and every selected target of this pass, under PROXY_PREFIX and LOAD_PREFIX.
start_targets() {
  local port edge tls target pid list
  PORT=() PIDS=() NOTE=()
  SWAP_ADMIN="" TLS_INGRESS="" TLS_HAPROXY=""
  UPSTREAM=$(free_port)
  say "[$PASS] starting the bench upstream on $LOOPBACK:$UPSTREAM"
  start "$PASS-upstream" "${LOAD_PREFIX[@]}" "$BIN/switchyard-bench" upstream --listen "$LOOPBACK:$UPSTREAM"
  wait_up "http://$LOOPBACK:$UPSTREAM/" "$LAST_PID" "$PASS-upstream" || die "the bench upstream did not start"
  PORT[direct]=$UPSTREAM
  UPSTREAM_PID=$LAST_PID
  list="upstream: pid $LAST_PID (CPUs $(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$LAST_PID/status"))"

  if selected switchyard || selected switchyard-dtab; then
    port=$(free_port)
    say "[$PASS] starting switchyard, 1 hop (minimal config) on $LOOPBACK:$port"
    if start_switchyard "$PASS-switchyard" bench "$port" "$UPSTREAM"; then
      PORT[switchyard]=$port PIDS[switchyard]=$LAST_PID
      PORT[switchyard-dtab]=$port PIDS[switchyard-dtab]=$LAST_PID
      SWAP_ADMIN=$LAST_ADMIN
    else
      not_available switchyard "did not start"
      not_available switchyard-dtab "did not start"
    fi
  fi
  if selected switchyard-threads && [[ $PASS == pinned ]]; then
    not_available switchyard-threads "unpinned pass only (one CPU for the proxy)"
  elif selected switchyard-threads; then
    port=$(free_port)
    say "[$PASS] starting switchyard, 1 hop (minimal config) with $(nproc) worker threads on $LOOPBACK:$port"
    local prefix=("${PROXY_PREFIX[@]}")
    PROXY_PREFIX=(env "SWITCHYARD_WORKER_THREADS=$(nproc)" "${prefix[@]}")
    if start_switchyard "$PASS-switchyard-threads" bench "$port" "$UPSTREAM"; then
      PORT[switchyard-threads]=$port PIDS[switchyard-threads]=$LAST_PID
    else
      not_available switchyard-threads "did not start"
    fi
    PROXY_PREFIX=("${prefix[@]}")
  fi
  if selected switchyard-mesh; then
    port=$(free_port)
    say "[$PASS] starting switchyard, 1 hop (mesh sidecar config) on $LOOPBACK:$port"
    if start_mesh_switchyard "$PASS-switchyard-mesh" egress "$port" "$UPSTREAM"; then
      PORT[switchyard-mesh]=$port PIDS[switchyard-mesh]=$LAST_PID
    else
      not_available switchyard-mesh "did not start (or its config was refused)"
    fi
  fi
  if selected switchyard-2hop; then
    say "[$PASS] starting switchyard, 2 hops (egress → ingress)"
    two_hops switchyard-2hop plain
  fi
  if selected switchyard-2hop-mtls; then
    say "[$PASS] starting switchyard, 2 hops with mTLS between them"
    two_hops switchyard-2hop-mtls mtls
  fi
  if selected haproxy || selected haproxy-2hop-mtls; then
    port=$(free_port) edge=$(free_port) tls=$(free_port)
    say "[$PASS] starting HAProxy on $LOOPBACK:$port (1 hop) and $edge (2 hops, mTLS between them)"
    if start_haproxy "$port" "$edge" "$tls"; then
      PORT[haproxy]=$port PIDS[haproxy]=$LAST_PID
      PORT[haproxy-2hop-mtls]=$edge PIDS[haproxy-2hop-mtls]=$LAST_PID
      TLS_HAPROXY=$tls
    else
      not_available haproxy "$WHY"
      not_available haproxy-2hop-mtls "$WHY"
    fi
  fi
  if selected nginx; then
    port=$(free_port)
    say "[$PASS] starting nginx on $LOOPBACK:$port"
    if start_nginx "$port"; then
      PORT[nginx]=$port PIDS[nginx]=$LAST_PID
    else
      not_available nginx "$WHY"
    fi
  fi

  # What runs where: the processes of each target, the CPUs they may use and their threads.
  for target in "${VISITS[@]}"; do
    [[ $target != direct && $target != switchyard-dtab && -z ${NOTE[$target]:-} ]] || continue
    list+="; $target:"
    for pid in $(proxy_pids "$target"); do
      list+=" pid $pid (CPUs $(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$pid/status" 2>/dev/null),"
      list+=" $(awk '/^Threads:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) threads)"
    done
  done
  PROCS[$PASS]=$list
  say "[$PASS] $list"
}

# stop_targets — stops every process started since this pass began.
stop_targets() {
  local pid
  stop_processes TERM "${STARTED_PIDS[@]:PASS_FIRST}"
  for pid in "${STARTED_PIDS[@]:PASS_FIRST}"; do wait "$pid" 2>/dev/null || true; done
  STARTED_PIDS=("${STARTED_PIDS[@]:0:PASS_FIRST}")
}

# long_run — the mesh-config sidecar at RATE for LONG_SECS, its resident memory sampled every 10 s (LONG_SERIES).
long_run() {
  local pid=${PIDS[switchyard-mesh]:-} loader t0 i samples=""
  ((LONG_SECS > 0)) || return 0
  if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
    LONG_SERIES="not run: the mesh-config sidecar is not running"
    return 0
  fi
  say "[$PASS] long run: switchyard, 1 hop (mesh sidecar config) at $RATE requests/s for $LONG_SECS s, RSS every 10 s"
  "${LOAD_PREFIX[@]}" "$BIN/switchyard-bench" load --url "http://$LOOPBACK:${PORT[switchyard-mesh]}/" \
    --host upstream --connections "$RATE_CONNECTIONS" --duration "$LONG_SECS" --rate "$RATE" >"$WORK/long.out" 2>&1 &
  loader=$!
  STARTED_PIDS+=("$loader")
  t0=$SECONDS
  while kill -0 "$loader" 2>/dev/null; do
    samples+="$((SECONDS - t0)) s: $(mib "$(rss_kib "$pid")"), "
    for ((i = 0; i < 10; i++)); do
      kill -0 "$loader" 2>/dev/null || break
      sleep 1
    done
  done
  wait "$loader" || true
  samples+="after: $(mib "$(rss_kib "$pid")") MiB"
  LONG_SERIES="$samples (VmHWM $(mib "$(status_kib VmHWM "$pid")") MiB);"
  LONG_SERIES+=" harness: $(tail -n 1 "$WORK/long.out")"
  say "[$PASS] RSS over the long run: $LONG_SERIES"
}

# run_pass pinned|unpinned — starts the targets, runs every round, measures the handshakes, stops the targets.
run_pass() {
  local round target steal0 total0 steal1 total1 order
  PASS=$1
  if [[ $PASS == pinned ]]; then
    LOAD_PREFIX=(taskset -c "$LOAD_CPU")
    PROXY_PREFIX=(taskset -c "$PROXY_CPU")
    # This script's own work (curl, awk, the dtab swaps) belongs with the load, off the proxies' CPU.
    taskset -pc "$LOAD_CPU" $$ >/dev/null
  else
    LOAD_PREFIX=()
    PROXY_PREFIX=()
    taskset -pc "$ALLOWED_CPUS" $$ >/dev/null
  fi
  PASS_FIRST=${#STARTED_PIDS[@]}
  start_targets
  for ((round = 1; round <= ROUNDS; round++)); do
    ROUND=$round
    mapfile -t order < <(round_order "$round")
    say "[$PASS] round $round of $ROUNDS: ${order[*]}"
    read -r steal0 total0 < <(cpu_jiffies)
    for target in "${order[@]}"; do visit "$target"; done
    read -r steal1 total1 < <(cpu_jiffies)
    record machine steal "$(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) \
      'BEGIN { printf "%.1f", (t > 0 ? 100 * s / t : 0) }')"
  done
  if [[ -n $TLS_INGRESS ]] && kill -0 "${PIDS[switchyard-2hop-mtls]%% *}" 2>/dev/null; then
    say "[$PASS] full mutual-TLS handshakes per second, 5 s each"
    HANDSHAKES+=("| $PASS | switchyard ingress (rustls, ring) | $(handshakes "$TLS_INGRESS") |")
  fi
  if [[ -n $TLS_HAPROXY ]] && kill -0 "${PIDS[haproxy]}" 2>/dev/null; then
    HANDSHAKES+=("| $PASS | HAProxy TLS frontend (OpenSSL) | $(handshakes "$TLS_HAPROXY") |")
  fi
  [[ $PASS != "${PASSES[-1]}" ]] || long_run
  stop_targets
}

# ---------------------------------------------------------------------------
# The report

# series PASS TARGET METRIC — the metric in every round of PASS where it was measured, one a line.
series() {
  local r
  for ((r = 1; r <= ROUNDS; r++)); do
    if [[ -n ${VAL["$1|$r|$2|$3"]:-} ]]; then printf '%s\n' "${VAL["$1|$r|$2|$3"]}"; fi
  done
  return 0
}

# diff_series PASS TARGET OTHER METRIC — TARGET's metric minus OTHER's, in every round where both were measured.
diff_series() {
  local r a b
  for ((r = 1; r <= ROUNDS; r++)); do
    a=${VAL["$1|$r|$2|$4"]:-} b=${VAL["$1|$r|$3|$4"]:-}
    if [[ -n $a && -n $b ]]; then awk -v a="$a" -v b="$b" 'BEGIN { print a - b }'; fi
  done
  return 0
}

# summarize — "MEDIAN MIN MAX COUNT" of the numbers on stdin, one a line (nothing when there are none).
summarize() {
  sort -g | awk '{ x[NR] = $1 } END {
    if (NR == 0) exit
    m = NR % 2 ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2
    print m, x[1], x[NR], NR
  }'
}

# format DECIMALS [MEDIAN MIN MAX COUNT] — "median [min–max]" (the median alone for one round; n/a for none).
format() {
  (($# >= 5)) || {
    printf 'n/a'
    return
  }
  awk -v d="$1" -v m="$2" -v lo="$3" -v hi="$4" -v n="$5" 'BEGIN {
    f = "%." d "f"; s = sprintf(f, m)
    if (n > 1) s = s sprintf(" [" f "–" f "]", lo, hi)
    printf "%s", s
  }'
}

# cell DECIMALS PASS TARGET METRIC — the metric's median [range] over the rounds.
cell() {
  local s=()
  read -ra s < <(series "$2" "$3" "$4" | summarize)
  format "$1" "${s[@]}"
}

# diff_cell DECIMALS PASS TARGET OTHER METRIC — the median [range] of TARGET's metric minus OTHER's, round by round.
diff_cell() {
  local s=()
  read -ra s < <(diff_series "$2" "$3" "$4" "$5" | summarize)
  format "$1" "${s[@]}"
}

# median PASS TARGET METRIC — the metric's median over the rounds ("n/a" when never measured).
median() { series "$@" | summarize | awk '{ m = $1 } END { print (NR ? m : "n/a") }'; }

# total PASS TARGET METRIC... — the sum of the metrics over every round.
total() {
  local pass=$1 target=$2 metric
  shift 2
  for metric in "$@"; do series "$pass" "$target" "$metric"; done | awk '{ s += $1 } END { print s + 0 }'
}

# ratio A B — A / B to two decimals, n/a when either is not a number or B is 0.
ratio() {
  if ! [[ $1 =~ ^-?[0-9.]+$ && $2 =~ ^-?[0-9.]+$ ]]; then
    printf 'n/a'
    return
  fi
  awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) printf "n/a"; else printf "%.2f", a / b }'
}

# ratio_cell PASS TARGET METRIC — the median of TARGET's metric over the median of its reference row's.
ratio_cell() {
  ratio "$(median "$1" "$2" "$3")" "$(median "$1" "${REFERENCE[$2]:-haproxy}" "$3")"
}

# saturated PASS TARGET — "‡" when some round's run at HIGH_RATE achieved less than 95% of it.
saturated() {
  series "$1" "$2" hrps | awk -v r="$HIGH_RATE" '$1 < 0.95 * r { s = "‡" } END { printf "%s", s }'
}

# rss_cell PASS TARGET — the resident memory's median [range] in MiB, with what it sums.
rss_cell() {
  local note=""
  case $2 in
    switchyard-2hop | switchyard-2hop-mtls) note=" (2 sidecars)" ;;
    haproxy-2hop-mtls) note=" (the 1-hop process)" ;;
    nginx) note=" (master + workers)" ;;
  esac
  printf '%s%s' "$(cell 1 "$1" "$2" rss)" "$note"
}

# summary_table PASS — the pass's table: medians [ranges] over the rounds, ratios and added latency.
summary_table() {
  local pass=$1 target sat
  echo "| target | flat-out rps (wrk) | × HAProxy | CPU µs/req @${RATE} | × HAProxy | ctx switches/req @${RATE} |" \
    "added p50 µs @${RATE} | added p99 µs @${RATE} | added p50 µs @${HIGH_RATE} | added p99 µs @${HIGH_RATE} |" \
    "CPU µs/req @${HIGH_RATE} | errors | RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for target in "${VISITS[@]}"; do
    [[ $target != switchyard-dtab ]] || continue
    if [[ -n ${NOTES["$pass|$target"]:-} && -z $(series "$pass" "$target" wrk_rps) ]]; then
      echo "| ${TITLE[$target]} | n/a: ${NOTES["$pass|$target"]} | | | | | | | | | | | |"
      continue
    fi
    sat=$(saturated "$pass" "$target")
    if [[ $target == direct ]]; then
      echo "| ${TITLE[$target]} | $(cell 0 "$pass" direct wrk_rps) | $(ratio_cell "$pass" direct wrk_rps) |" \
        "— | — | — | — | — | — | — | — | $(total "$pass" direct wrk_errors errors herrors) | — |"
      continue
    fi
    echo "| ${TITLE[$target]} | $(cell 0 "$pass" "$target" wrk_rps) | $(ratio_cell "$pass" "$target" wrk_rps) |" \
      "$(cell 1 "$pass" "$target" cpu) | $(ratio_cell "$pass" "$target" cpu) | $(cell 2 "$pass" "$target" ctx) |" \
      "$(diff_cell 0 "$pass" "$target" direct p50) | $(diff_cell 0 "$pass" "$target" direct p99) |" \
      "$(diff_cell 0 "$pass" "$target" direct hp50)$sat | $(diff_cell 0 "$pass" "$target" direct hp99)$sat |" \
      "$(cell 1 "$pass" "$target" hcpu) | $(total "$pass" "$target" wrk_errors errors herrors) |" \
      "$(rss_cell "$pass" "$target") |"
  done
}

# latency_table PASS — absolute latencies and the rates the fixed-rate runs achieved, medians [ranges].
latency_table() {
  local pass=$1 target
  echo "| target | wrk p99 µs | p50 µs @${RATE} | p99 µs | p99.9 µs | achieved rps | p50 µs @${HIGH_RATE} | p99 µs |" \
    "p99.9 µs | achieved rps |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for target in "${VISITS[@]}"; do
    [[ $target != switchyard-dtab && -n $(series "$pass" "$target" wrk_rps) ]] || continue
    echo "| ${TITLE[$target]} | $(cell 0 "$pass" "$target" wrk_p99) | $(cell 0 "$pass" "$target" p50) |" \
      "$(cell 0 "$pass" "$target" p99) | $(cell 0 "$pass" "$target" p999) | $(cell 0 "$pass" "$target" rps) |" \
      "$(cell 0 "$pass" "$target" hp50) | $(cell 0 "$pass" "$target" hp99) | $(cell 0 "$pass" "$target" hp999) |" \
      "$(cell 0 "$pass" "$target" hrps) |"
  done
}

# swap_table — per pass and round: the minimal switchyard hop flat-out without and with dtab swaps.
swap_table() {
  local pass r v key
  echo "| pass | round | rps, control | with dtab swaps | p99 µs, control | with dtab swaps | errors, control |" \
    "with dtab swaps | dtab PUTs answered 204 / sent (per second) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
  for pass in "${PASSES[@]}"; do
    for ((r = 1; r <= ROUNDS; r++)); do
      key="$pass|$r|switchyard-dtab"
      v=${VAL["$key|puts"]:-}
      [[ -n $v ]] || continue
      echo "| $pass | $r | ${VAL["$key|control_rps"]:-n/a} | ${VAL["$key|wrk_rps"]:-n/a} |" \
        "${VAL["$key|control_p99"]:-n/a} | ${VAL["$key|wrk_p99"]:-n/a} |" \
        "${VAL["$key|control_errors"]:-n/a} | ${VAL["$key|wrk_errors"]:-n/a} |" \
        "${VAL["$key|puts_ok"]} / $v ($(awk -v n="${VAL["$key|puts_ok"]}" -v s="$SECS" \
          'BEGIN { printf "%.1f", n / s }')/s) |"
    done
  done
}

# raw_table — every round's figures, as measured.
raw_table() {
  local pass r target k row
  echo "| pass | round | target | wrk rps | wrk p99 | wrk errors | p50 @${RATE} | p99 | p99.9 | rps | errors |" \
    "CPU µs/req | cs/req | RSS MiB | p50 @${HIGH_RATE} | p99 | p99.9 | rps | errors | CPU µs/req | cs/req |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for pass in "${PASSES[@]}"; do
    for ((r = 1; r <= ROUNDS; r++)); do
      for target in "${VISITS[@]}"; do
        [[ -n ${VAL["$pass|$r|$target|wrk_rps"]:-} ]] || continue
        row="| $pass | $r | $target"
        for k in wrk_rps wrk_p99 wrk_errors p50 p99 p999 rps errors cpu ctx rss \
          hp50 hp99 hp999 hrps herrors hcpu hctx; do
          row+=" | ${VAL["$pass|$r|$target|$k"]:--}"
        done
        echo "$row |"
      done
    done
  done
}

# overhead A B — A over B in percent ("+23%"), n/a when either is not a number.
overhead() {
  if [[ $(ratio "$1" "$2") == n/a ]]; then
    printf 'n/a'
  else
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.0f%%", 100 * (a / b - 1) }'
  fi
}

# per_sidecar MIB — half of two sidecars' memory, n/a when not measured.
per_sidecar() {
  if [[ $1 == n/a ]]; then printf 'n/a'; else awk -v m="$1" 'BEGIN { printf "%.1f", m / 2 }'; fi
}

# versus PASS METRIC UNIT — "A vs BUNIT: R×": the minimal switchyard hop's median, HAProxy's, their ratio.
versus() {
  local a b r
  a=$(median "$1" switchyard "$2")
  b=$(median "$1" haproxy "$2")
  r=$(ratio "$a" "$b")
  [[ $r == n/a ]] || r="$r×"
  printf '%s vs %s%s: %s' "$a" "$b" "$3" "$r"
}

# added PASS METRIC — "A vs B µs, difference D [range]": latency added over direct by switchyard and HAProxy.
added() {
  local a b
  a=$(diff_cell 0 "$1" switchyard direct "$2")
  b=$(diff_cell 0 "$1" haproxy direct "$2")
  printf '%s vs %s µs, difference %s' "${a%% *}" "${b%% *}" "$(diff_cell 0 "$1" switchyard haproxy "$2")"
}

# goals PASS — plain figures for the issue's goals: the minimal switchyard hop against HAProxy's, the mesh
# config's cost, memory per sidecar.
goals() {
  local p=$1
  echo "## Goals ($p pass): ${TITLE[switchyard]} vs ${TITLE[haproxy]}"
  echo
  echo "Medians over the rounds; differences are taken round by round (median [range])."
  echo
  echo "- flat-out requests/s: $(versus "$p" wrk_rps "")"
  echo "- CPU per request @${RATE}/s: $(versus "$p" cpu " µs"); @${HIGH_RATE}/s: $(versus "$p" hcpu " µs")"
  echo "- added latency over direct, switchyard vs HAProxy: p50 @${RATE}/s $(added "$p" p50);" \
    "p99 @${RATE}/s $(added "$p" p99); p50 @${HIGH_RATE}/s $(added "$p" hp50); p99 @${HIGH_RATE}/s $(added "$p" hp99)"
  echo "- CPU per request of the mesh sidecar config over the minimal config:" \
    "@${RATE}/s $(overhead "$(median "$p" switchyard-mesh cpu)" "$(median "$p" switchyard cpu)")," \
    "@${HIGH_RATE}/s $(overhead "$(median "$p" switchyard-mesh hcpu)" "$(median "$p" switchyard hcpu)")"
  echo "- resident memory per sidecar after the ${RATE}/s run, MiB: minimal config $(median "$p" switchyard rss)," \
    "mesh config $(median "$p" switchyard-mesh rss)," \
    "2 hops mTLS $(per_sidecar "$(median "$p" switchyard-2hop-mtls rss)") each" \
    "(HAProxy $(median "$p" haproxy rss), nginx master + workers $(median "$p" nginx rss))"
  if [[ -n $LONG_SERIES ]]; then
    echo "- over a long run (mesh config at ${RATE}/s for ${LONG_SECS} s, ${PASSES[-1]} pass), RSS MiB: $LONG_SERIES"
  fi
}

# version COMMAND — the installed version of haproxy, nginx or wrk ("not installed" when missing).
version() {
  command -v "$1" >/dev/null 2>&1 || {
    printf 'not installed'
    return
  }
  case $1 in
    haproxy) haproxy -v 2>&1 | awk 'NR == 1 { print $3 }' ;;
    nginx) nginx -v 2>&1 | awk -F/ '{ print $2 }' ;;
    wrk) wrk -v 2>&1 | awk 'NR == 1 { print $2 }' ;;
  esac
}

# write_report — target/bench/latest.md, then prints it.
write_report() {
  local pass dirty="" steal pinning=""
  git diff --quiet HEAD 2>/dev/null || dirty=" with uncommitted changes"
  [[ $PIN == no ]] ||
    pinning="; pinned: proxies on CPU $PROXY_CPU, the upstream, load generators and this script on $LOAD_CPU"
  {
    echo "# switchyard bench — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- machine: $CPUS CPUs ($(lscpu | awk -F': *' '/^Model name/ { print $2; exit }')), kernel $(uname -r)," \
      "load average at the start $LOAD_AT_START"
    echo "- code: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty;" \
      "$("$BIN/switchyard" --version 2>/dev/null || echo "switchyard missing");" \
      "HAProxy $(version haproxy), nginx $(version nginx), wrk $(version wrk)"
    echo "- settings: $ROUNDS interleaved rounds per pass; flat-out: wrk -t1 -c$CONNECTIONS -d${SECS}s; fixed rate" \
      "(switchyard-bench load, open loop): $REQUESTS requests at $RATE/s over $RATE_CONNECTIONS connections and" \
      "$HIGH_REQUESTS at $HIGH_RATE/s over $HIGH_CONNECTIONS; a 1 s wrk warm-up before each measurement of round 1"
    echo "- passes: ${PASSES[*]}$pinning"
    echo "- took $(((SECONDS - STARTED_AT) / 60)) min $(((SECONDS - STARTED_AT) % 60)) s"
    echo
    echo "How to read: every figure is the median over the rounds, [min–max] beside it. × HAProxy: the row's median" \
      "over HAProxy, 1 hop's (the two mTLS rows: over HAProxy, 2 hops mTLS's). CPU and context switches per request:" \
      "every process of the row (user + system time from /proc/PID/stat; switches of every thread), over exactly" \
      "the fixed-rate run, divided by its requests. Added latency: the row's percentile minus direct's in the same" \
      "round. ‡: some round's run at ${HIGH_RATE}/s achieved under 95% of that rate, so its latency includes" \
      "queueing. Errors: wrk's non-2xx answers and socket errors plus the harness's failed requests, all rounds." \
      "RSS: VmRSS after the ${RATE}/s run."
    for pass in "${PASSES[@]}"; do
      echo
      steal=$(series "$pass" machine steal | paste -sd/ -)
      echo "## $pass pass (CPU steal per round, %: ${steal:-n/a})"
      echo
      summary_table "$pass"
      echo
      latency_table "$pass"
      echo
      echo "Processes: ${PROCS[$pass]:-}"
    done
    if selected switchyard-dtab; then
      echo
      echo "## Dtab swaps: ${TITLE[switchyard]} flat-out (wrk, ${SECS} s) while its dtab is PUT every ${SWAP_MS} ms"
      echo
      echo "Alternating between \`/svc/* => /\$/inet/$LOOPBACK/UPSTREAM;\` and the same plus an unused" \
        "\`/other\` dentry, from one client process on one kept-alive connection. The control run, just before," \
        "sends the same PUTs to a router the sidecar does not have (404, nothing changes): the same admin work and" \
        "the same client beside wrk, so the difference between the two is what replacing the dtab costs."
      echo
      swap_table
    fi
    if ((${#HANDSHAKES[@]} > 0)); then
      echo
      echo "## Mutual-TLS handshakes per second accepted"
      echo
      echo "bench/handshakes.py: one Python client, a new session for every connection, 5 s."
      echo
      echo "| pass | server | handshakes/s |"
      echo "|---|---|---:|"
      printf '%s\n' "${HANDSHAKES[@]}"
    fi
    echo
    echo "## Every round's figures (latency in µs)"
    echo
    raw_table
    echo
    if [[ " ${PASSES[*]} " == *" pinned "* ]]; then goals pinned; else goals "${PASSES[0]}"; fi
  } >"$REPORT"
  echo
  cat "$REPORT"
  echo
  say "report written to $REPORT (raw figures: $RESULTS)"
}

# estimate — the expected duration of this run in minutes, from the settings.
estimate() {
  local n=${#VISITS[@]} swap=0 hs=0
  selected switchyard-dtab && n=$((n - 1)) && swap=1
  selected switchyard-2hop-mtls && hs=5
  selected haproxy-2hop-mtls && hs=$((hs + 5))
  awk -v p=${#PASSES[@]} -v r="$ROUNDS" -v n="$n" -v s="$SECS" -v a="$((REQUESTS / RATE))" \
    -v b="$((HIGH_REQUESTS / HIGH_RATE))" -v w="$swap" -v h="$hs" -v l="$LONG_SECS" \
    'BEGIN { printf "%.0f", (p * (r * (n * (s + a + b + 1) + w * (2 * s + 1)) + (n + w) * 3 + h + 5) + l) / 60 }'
}

# main — checks the settings, installs wrk, runs each pass and writes the report.
main() {
  local pass
  check_settings
  STARTED_AT=$SECONDS
  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  ensure_packages wrk wrk wrk
  build
  [[ -x $BIN/switchyard-bench ]] || die "$BIN/switchyard-bench is missing"
  CLK_TCK=$(getconf CLK_TCK)
  CPUS=$(nproc)
  ALLOWED_CPUS=$(allowed_cpus | paste -sd, -)
  LOAD_CPU=$(allowed_cpus | sed -n 1p)
  PROXY_CPU=$(allowed_cpus | sed -n 2p)
  if [[ -z $PROXY_CPU && $PIN != no ]]; then
    warn "only one CPU (${ALLOWED_CPUS}) to run on: no pinned pass"
    PIN=no PASSES=(unpinned)
  fi
  rm -rf "$WORK"
  mkdir -p "$WORK"
  : >"$RESULTS"
  awk -v l="${LOAD_AT_START%% *}" 'BEGIN { exit !(l > 0.5) }' &&
    warn "load average $LOAD_AT_START before starting: something else is busy, figures will be noisy"
  say "bench: ${PASSES[*]}; $ROUNDS rounds of ${VISITS[*]}; about $(estimate) min"
  if [[ -x $BIN/switchyard ]]; then make_pki; else warn "$BIN/switchyard is missing: its rows will be n/a"; fi
  for pass in "${PASSES[@]}"; do run_pass "$pass"; done
  write_report
}

main "$@"
