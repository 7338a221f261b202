#!/usr/bin/env bash
# callgrind.sh — `make bench-instructions`: machine instructions a switchyard hop executes per request, and the
# functions they are spent in, counted by valgrind's callgrind (instructions, not seconds: the same binary and
# traffic give the same count whatever else the machine is doing).
#
# Starts the bench upstream, then each proxy in turn under callgrind, one process, one thread: switchyard with the
# minimal config (one router, one dtab line) and with the mesh's own egress config (access log, classifier,
# retries, hedging, timeouts, EWMA, failure accrual), HAProxy (`nbthread 1`) and nginx (no master process) as
# references. Each gets CG_WARMUP requests, its counters are zeroed, then it serves CG_REQUESTS at a gentle fixed
# rate (callgrind runs a proxy ~50× slower); the counts are dumped and divided by the requests answered. Prints
# instructions per request side by side and each proxy's top functions (exclusive and inclusive), and writes
# them to target/bench/instructions.md.
#
# Environment: CG_REQUESTS=2000, CG_WARMUP=500, CG_RATE=200 (requests/s), CG_TOP=25 (functions listed),
# CG_PROXIES="minimal mesh haproxy nginx", SKIP_BUILD=1 (use the binaries in target/release).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
REQUESTS=${CG_REQUESTS:-2000}
WARMUP=${CG_WARMUP:-500}
RATE=${CG_RATE:-200}
TOP=${CG_TOP:-25}
PROXIES=${CG_PROXIES:-minimal mesh haproxy nginx}
BIN=target/release
WORK=target/bench/callgrind
REPORT=target/bench/instructions.md
LOOPBACK=127.0.0.1

# shellcheck source=bench/lib.sh
source bench/lib.sh

# paced N — sends N requests to the sidecar at CG_RATE; prints the harness's summary line.
paced() {
  local n=$1
  "$BIN/switchyard-bench" load --url "http://$LOOPBACK:$PORT/" --host upstream --connections 4 \
    --rate "$RATE" --duration "$(awk -v n="$n" -v r="$RATE" 'BEGIN { printf "%.3f", n / r }')"
}

# field LINE KEY — the value of KEY=value in the harness's summary line.
field() {
  local pair
  for pair in $1; do
    [[ ${pair%%=*} == "$2" ]] && { printf '%s' "${pair#*=}"; return; }
  done
  printf '0'
}

# top_functions FILE — the first CG_TOP functions of an annotated profile, with crate paths shortened.
top_functions() {
  awk -v top="$TOP" '/file:function/ { on = 1; next } on && NF && !/\(100\.0%\)/ && shown < top { print; shown++ }' "$1" |
    sed -E 's|/root/.cargo/registry/src/[^/]*/||; s|/rustc/[0-9a-f]*/library/||; s| \[[^]]*\]$||' | cut -c1-180
}

# profile ID TITLE COMMAND... — the proxy COMMAND (listening on PORT) under callgrind: warm up, zero, measure,
# dump; appends its section (under TITLE) to the report and its line to TOTALS.
profile() {
  local id=$1 name=$2 out summary ok errors total pid
  shift 2
  out=$WORK/callgrind.$id.out
  say "$name: starting under callgrind"
  start "$id" valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no "$@"
  pid=$LAST_PID
  wait_for "http://$LOOPBACK:$PORT/" 120 "$pid" -H 'Host: upstream' || {
    show_log_tail "$WORK/$id.log" 20 "$name did not start under callgrind"
    return 1
  }
  say "$name: $WARMUP warm-up requests, then zeroing the counters"
  paced "$WARMUP" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  say "$name: $REQUESTS requests at $RATE/s"
  summary=$(paced "$REQUESTS")
  ok=$(field "$summary" requests)
  errors=$(field "$summary" errors)
  callgrind_control -d "$pid" >/dev/null
  # The dump after zeroing is the newest file callgrind wrote: <out>.<n>.
  local dump
  dump=$out.1
  [[ -f $dump ]] || die "callgrind wrote no dump for $name"
  # Annotated once into files (a pipe into `head` would end callgrind_annotate early, failing under pipefail).
  callgrind_annotate --threshold=100 "$dump" >"$dump.self" 2>/dev/null
  callgrind_annotate --inclusive=yes --threshold=100 "$dump" >"$dump.inclusive" 2>/dev/null
  total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' "$dump.self")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  TOTALS+=("| $name | $(awk -v t="$total" -v n="$ok" 'BEGIN { printf "%.0f", t / n }') | $ok | $errors |")
  {
    echo "## $name: $(awk -v t="$total" -v n="$ok" 'BEGIN { printf "%.0f", t / n }') instructions per request"
    echo
    echo "$ok requests answered ($errors errors) at $RATE/s after $WARMUP warm-up requests; $total instructions in all."
    echo
    echo "Top $TOP functions by instructions spent in them (exclusive):"
    echo
    echo '```'
    top_functions "$dump.self"
    echo '```'
    echo
    echo "Top $TOP by inclusive instructions (the function and what it calls):"
    echo
    echo '```'
    top_functions "$dump.inclusive"
    echo '```'
    echo
  } >>"$SECTIONS"
}

# start_proxy NAME — profiles one proxy of CG_PROXIES on a free PORT in front of UPSTREAM.
start_proxy() {
  local name=$1 dir=$REPO_ROOT/$WORK/$1
  PORT=$(free_port)
  mkdir -p "$dir"
  case $name in
    minimal)
      sidecar_config "$dir/switchyard.yaml" bench "$PORT" "$(free_port)" "$UPSTREAM"
      profile minimal "switchyard (minimal config)" "$BIN/switchyard" run "$dir/switchyard.yaml"
      ;;
    mesh)
      mesh_sidecar_config "$dir/switchyard.yaml" bench "$PORT" "$(free_port)" "$UPSTREAM" "$dir/access.log"
      profile mesh "switchyard (mesh sidecar config)" "$BIN/switchyard" run "$dir/switchyard.yaml"
      ;;
    haproxy)
      command -v haproxy >/dev/null 2>&1 || mesh/mesh.sh install-haproxy
      [[ -f $PKI/ca/ca.pem ]] || make_pki
      printf 'global\n    nbthread 1\n%s\n' "$(haproxy_config "$PORT" "$UPSTREAM" "$(free_port)" "$(free_port)")" \
        >"$dir/haproxy.cfg"
      profile haproxy "HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }')" "$(command -v haproxy)" -db -f "$dir/haproxy.cfg"
      ;;
    nginx)
      command -v nginx >/dev/null 2>&1 || ensure_packages nginx nginx --no-install-recommends nginx
      nginx_config "$dir" "$PORT" "$UPSTREAM" 1 bench/callgrind.sh
      profile nginx "nginx $(nginx -v 2>&1 | sed 's|.*nginx/||')" "$(command -v nginx)" -p "$dir" -c "$dir/nginx.conf" \
        -e "$dir/error.log" -g 'daemon off; master_process off;'
      ;;
    *) die "CG_PROXIES: unknown proxy $name (minimal, mesh, haproxy, nginx)" ;;
  esac
}

main() {
  build
  command -v valgrind >/dev/null 2>&1 || ensure_packages valgrind valgrind valgrind
  rm -rf "$WORK"
  mkdir -p "$WORK"
  SECTIONS=$WORK/sections.md
  : >"$SECTIONS"
  TOTALS=()
  UPSTREAM=$(free_port)
  start upstream "$BIN/switchyard-bench" upstream --listen "$LOOPBACK:$UPSTREAM"
  wait_up "http://$LOOPBACK:$UPSTREAM/" "$LAST_PID" upstream || exit 1
  local name
  for name in $PROXIES; do
    start_proxy "$name" || warn "$name: not measured"
  done
  {
    echo "# Instructions per request — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "valgrind $(valgrind --version | sed 's/valgrind-//'), callgrind; one HTTP/1.1 keep-alive hop to a trivial" \
      "upstream, $REQUESTS requests at $RATE/s over 4 connections after $WARMUP warm-up requests; switchyard" \
      "$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+changes')."
    echo
    echo "| proxy | instructions per request | requests | errors |"
    echo "|---|---:|---:|---:|"
    printf '%s\n' "${TOTALS[@]}"
    echo
    cat "$SECTIONS"
  } >"$REPORT"
  cat "$REPORT"
  say "written to $REPORT"
}

main "$@"
