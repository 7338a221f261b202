#!/usr/bin/env bash
# soak.sh — the soak test behind `make soak`: a bounded long run through the real local mesh. A private mesh
# with three forex-rate instances (MESH_NET=127.79, RUN_DIR=target/soak-run, beside a developer's mesh and the
# other tests' meshes), steady open-loop conversions through HAProxy while mesh/soak_test.py swaps the
# mesh-wide dtab, restarts forex-rate instances and abuses a sidecar's listeners on a schedule, and samples
# every sidecar's memory and file descriptors; then the mesh is always taken down. The figures go to
# target/soak/report.md, the raw samples to target/soak/samples.csv.
#
# Environment: SOAK_MINUTES=20 (the run stops by itself after it), SOAK_RATE=100 (conversions per second),
# SKIP_BUILD=1 (use the binaries already in target/release), and the rest of mesh/soak_test.py's settings
# (SOAK_CLIENTS, SOAK_DTAB_SECS, SOAK_RESTART_SECS, SOAK_ABUSE_SECS, SOAK_SAMPLE_SECS, SOAK_RSS_SLOPE_KIB,
# SOAK_FD_GROWTH). Exit status 1 when a conversion failed, an event went wrong or a sidecar leaks.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
export MESH_NET=${SOAK_MESH_NET:-127.79}
export RUN_DIR=${SOAK_RUN_DIR:-target/soak-run}
export RATE_INSTANCES=3 PROMETHEUS=0
export SOAK_MINUTES=${SOAK_MINUTES:-20} SOAK_RATE=${SOAK_RATE:-100}

# shellcheck source=mesh/private-mesh.sh
source mesh/private-mesh.sh

[[ $SOAK_MINUTES =~ ^[0-9]+(\.[0-9]+)?$ && $SOAK_MINUTES =~ [1-9] ]] ||
  die "SOAK_MINUTES must be a positive number of minutes (got '$SOAK_MINUTES')"
[[ $SOAK_RATE =~ ^[1-9][0-9]*$ ]] || die "SOAK_RATE must be a positive whole number of conversions/s (got '$SOAK_RATE')"

say "soak test: $SOAK_MINUTES min at $SOAK_RATE conversions/s; private mesh MESH_NET=$MESH_NET RUN_DIR=$RUN_DIR" \
  "with $RATE_INSTANCES forex-rate instances"
private_mesh_up "soak test" 40
python3 mesh/soak_test.py
