#!/usr/bin/env bash
# e2e.sh — the end-to-end test behind `make test`: brings up a private mesh beside any
# mesh a developer already runs (MESH_NET=127.77, RUN_DIR=target/e2e-run), runs
# mesh/e2e_test.py against it, and always takes it down again. On failure it prints
# the mesh's logs. Exit status: the test's.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
export MESH_NET=${E2E_MESH_NET:-127.77}
export RUN_DIR=${E2E_RUN_DIR:-target/e2e-run}

# shellcheck source=mesh/private-mesh.sh
source mesh/private-mesh.sh

say "end-to-end: fresh private mesh MESH_NET=$MESH_NET RUN_DIR=$RUN_DIR"
private_mesh_up "end-to-end test" 80
say "running mesh/e2e_test.py against http://$MESH_NET.0.1:8080"
python3 mesh/e2e_test.py -v
# Prometheus scraped this mesh all along: every target up and promtool-clean, the rules working, and
# every Grafana panel's query returning data after a burst of conversions.
say "running prometheus/test_live.py against http://$MESH_NET.0.1:9090"
python3 prometheus/test_live.py -v
say "running grafana/test_dashboards.py (every panel's query against that Prometheus)"
python3 grafana/test_dashboards.py -v
# The browser check: headless Chromium through a sidecar dashboard, the delegator and the
# forex-web form. Skipped (loudly) only when Chromium cannot be installed on this machine.
if mesh/mesh.sh install-chromium; then
  say "running mesh/browser_test.py (headless Chromium; screenshots in target/browser/)"
  python3 mesh/browser_test.py -v
else
  say "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  say "!!! SKIPPED the browser check: Chromium could not be installed (see the messages above)"
  say "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
fi
