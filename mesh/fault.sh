#!/usr/bin/env bash
# fault.sh — the fault tests over the real local mesh, behind `make test` (and `make fault-test`):
# a private mesh with three forex-rate instances (MESH_NET=127.78, RUN_DIR=target/fault-run), steady
# conversions through HAProxy while mesh/fault_test.py kills, slows, breaks and restarts forex-rate
# instances, then the mesh is always taken down. The figures go to target/fault/report.md.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
export MESH_NET=${FAULT_MESH_NET:-127.78}
export RUN_DIR=${FAULT_RUN_DIR:-target/fault-run}
export RATE_INSTANCES=3 PROMETHEUS=0

say() { printf '==> %s\n' "$*"; }

finish() {
  local status=$?
  if ((status != 0)); then
    local log
    while read -r log; do
      echo "----- $log (last 40 lines)"
      tail -n 40 "$log"
    done < <(find "$RUN_DIR" -name '*.log' 2>/dev/null | sort)
  fi
  say "taking the fault-test mesh down"
  mesh/mesh.sh down || true
  if ((status == 0)); then say "fault tests passed"; else say "fault tests FAILED"; fi
  exit "$status"
}
trap finish EXIT

say "fault tests: private mesh MESH_NET=$MESH_NET RUN_DIR=$RUN_DIR with $RATE_INSTANCES forex-rate instances"
mesh/mesh.sh clean
mesh/mesh.sh up
python3 mesh/fault_test.py
