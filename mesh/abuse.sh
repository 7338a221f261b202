#!/usr/bin/env bash
# abuse.sh — the abuse suite: hostile and broken clients against one switchyard sidecar, in raw bytes. Starts
# mesh/abuse_upstream.py (an HTTP/1.1 echo server that logs every request head it receives), renders a sidecar
# config into target/abuse/ (router `abuse` with two servers, a routing loop `loop`, and `dead`, whose dtab points
# at a closed port), starts target/release/switchyard on it, waits until it answers, runs mesh/abuse_test.py, and
# always stops both processes again. On failure it prints the sidecar's log. Exit status: the test's.
# Needs the release binary (cargo build --release -p switchyard); ABUSE_DIR (default target/abuse) holds the
# config, the logs and the pid files.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=mesh/lib/common.sh
source mesh/lib/common.sh

SWITCHYARD=${BIN_DIR:-target/release}/switchyard
ABUSE_DIR=${ABUSE_DIR:-target/abuse}
[[ -x $SWITCHYARD ]] || die "$SWITCHYARD is missing: build it first (cargo build --release -p switchyard)"

mkdir -p "$ABUSE_DIR"
ABUSE_DIR=$(cd "$ABUSE_DIR" && pwd)
rm -f "$ABUSE_DIR"/*.log "$ABUSE_DIR"/*.pid "$ABUSE_DIR/config.yaml"

# Eight distinct free ports of 127.0.0.1, all chosen while the others are still held (free_port, called eight
# times, could hand out one twice). The last one is never listened on: the dead router's upstream.
read -r ADMIN_PORT UPSTREAM_PORT PORT PORT_FULL LOOP_PORT DEAD_PORT DEAD_FULL_PORT DEAD_UPSTREAM_PORT < <(
  python3 -c '
import socket
held = [socket.socket() for _ in range(8)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))'
)
[[ -n ${DEAD_UPSTREAM_PORT:-} ]] || die "could not find eight free ports on 127.0.0.1"

stop_all() {
  stop_processes TERM "$ABUSE_DIR/switchyard.pid" "$ABUSE_DIR/abuse_upstream.py.pid"
}
on_exit() {
  local status=$?
  if ((status != 0)); then
    show_log_tail "$ABUSE_DIR/switchyard.log" 200 "the sidecar's log ($ABUSE_DIR/switchyard.log), last 200 lines:"
    show_log_tail "$ABUSE_DIR/abuse_upstream.py.log" 20 "the upstream's output:"
  fi
  stop_all
  exit "$status"
}
trap on_exit EXIT

# The NEW keys (headerTimeoutMs, idleTimeoutMs, bodyIdleTimeoutMs, maxConnections, errorDetail, maxHops) are
# unknown-key warnings to a sidecar that predates them: it still starts, and the tests of them fail.
cat >"$ABUSE_DIR/config.yaml" <<EOF
# The abuse suite's sidecar, rendered by mesh/abuse.sh: edit the script, not this file.
admin: {ip: 127.0.0.1, port: $ADMIN_PORT}
routers:
- protocol: http
  label: abuse
  dtab: |
    /svc/* => /\$/inet/127.0.0.1/$UPSTREAM_PORT;
  servers:
  - ip: 127.0.0.1
    port: $PORT
    headerTimeoutMs: 1000
    idleTimeoutMs: 3000
    bodyIdleTimeoutMs: 1000
    maxConnections: 40
    errorDetail: generic
  - ip: 127.0.0.1
    port: $PORT_FULL
    errorDetail: full
  maxHops: 5
  service: {totalTimeoutMs: 5000}
# A routing loop: every request goes back to this router's own server, until the hop limit refuses it (508).
- protocol: http
  label: loop
  dtab: |
    /svc/* => /\$/inet/127.0.0.1/$LOOP_PORT;
  servers:
  - ip: 127.0.0.1
    port: $LOOP_PORT
  service: {totalTimeoutMs: 5000}
# An upstream that is down (nothing listens on its port): what the two kinds of error answer say about it.
- protocol: http
  label: dead
  dtab: |
    /svc/* => /\$/inet/127.0.0.1/$DEAD_UPSTREAM_PORT;
  servers:
  - ip: 127.0.0.1
    port: $DEAD_PORT
    errorDetail: generic
  - ip: 127.0.0.1
    port: $DEAD_FULL_PORT
    errorDetail: full
  service: {totalTimeoutMs: 5000}
EOF

say "abuse suite: upstream 127.0.0.1:$UPSTREAM_PORT, sidecar 127.0.0.1:$PORT (generic) and :$PORT_FULL (full)," \
  "loop :$LOOP_PORT, dead :$DEAD_PORT/:$DEAD_FULL_PORT, admin :$ADMIN_PORT; files in $ABUSE_DIR"
: >"$ABUSE_DIR/upstream-requests.log"
start_process "$ABUSE_DIR" mesh/abuse_upstream.py "$UPSTREAM_PORT" "$ABUSE_DIR/upstream-requests.log"
export RUST_LOG=${RUST_LOG:-info}
start_process "$ABUSE_DIR" "$SWITCHYARD" "$ABUSE_DIR/config.yaml"

wait_for "http://127.0.0.1:$UPSTREAM_PORT/ready" 15 "$ABUSE_DIR/abuse_upstream.py.pid" ||
  die "the upstream $WAIT_FAILURE"
wait_for "http://127.0.0.1:$ADMIN_PORT/admin/ready" 30 "$ABUSE_DIR/switchyard.pid" || die "the sidecar $WAIT_FAILURE"
for port in "$PORT" "$PORT_FULL"; do
  wait_for "http://127.0.0.1:$port/ready" 15 "$ABUSE_DIR/switchyard.pid" -H 'Host: foo' ||
    die "the sidecar $WAIT_FAILURE"
done

export ABUSE_SIDECAR=127.0.0.1:$PORT
export ABUSE_SIDECAR_FULL=127.0.0.1:$PORT_FULL
export ABUSE_LOOP=127.0.0.1:$LOOP_PORT
export ABUSE_DEAD_GENERIC=127.0.0.1:$DEAD_PORT
export ABUSE_DEAD_FULL=127.0.0.1:$DEAD_FULL_PORT
export ABUSE_DEAD_UPSTREAM=127.0.0.1:$DEAD_UPSTREAM_PORT
export ABUSE_UPSTREAM=127.0.0.1:$UPSTREAM_PORT
export ABUSE_UPSTREAM_LOG=$ABUSE_DIR/upstream-requests.log
ABUSE_SIDECAR_PID=$(<"$ABUSE_DIR/switchyard.pid")
export ABUSE_SIDECAR_PID
say "running mesh/abuse_test.py against $ABUSE_SIDECAR (sidecar pid $ABUSE_SIDECAR_PID)"
python3 mesh/abuse_test.py -v
