# shellcheck shell=bash
# private-mesh.sh — sourced by the test drivers (mesh/e2e.sh, mesh/fault.sh): start a fresh private mesh in
# $RUN_DIR on $MESH_NET and make sure it is taken down however the script ends, printing the mesh's logs when
# it failed. Not run on its own (the drivers cd to the repository root first).

# shellcheck source=mesh/lib/common.sh
source mesh/lib/common.sh

# print_logs WHAT LINES — the last LINES lines of every log of the mesh, headed by what failed.
print_logs() {
  local what=$1 lines=$2 log
  echo "---------------------------------------------------------------------------"
  echo "$what failed: logs of the mesh in $RUN_DIR"
  while read -r log; do
    echo "----- $log (last $lines lines)"
    tail -n "$lines" "$log"
  done < <(find "$RUN_DIR" -name '*.log' 2>/dev/null | sort)
  echo "---------------------------------------------------------------------------"
}

# private_mesh_up WHAT LOG_LINES — a fresh mesh, taken down (and its logs shown on failure) when the script exits.
private_mesh_up() {
  PRIVATE_MESH_WHAT=$1
  PRIVATE_MESH_LOG_LINES=$2
  trap private_mesh_finish EXIT
  mesh/mesh.sh clean
  mesh/mesh.sh up
}

private_mesh_finish() {
  local status=$?
  if ((status != 0)); then print_logs "$PRIVATE_MESH_WHAT" "$PRIVATE_MESH_LOG_LINES"; fi
  say "taking the $PRIVATE_MESH_WHAT mesh down"
  mesh/mesh.sh down || true
  if ((status == 0)); then say "$PRIVATE_MESH_WHAT passed"; else say "$PRIVATE_MESH_WHAT FAILED"; fi
  exit "$status"
}
