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

# shellcheck source=mesh/private-mesh.sh
source mesh/private-mesh.sh

say "fault tests: private mesh MESH_NET=$MESH_NET RUN_DIR=$RUN_DIR with $RATE_INSTANCES forex-rate instances"
private_mesh_up "fault tests" 40
python3 mesh/fault_test.py
