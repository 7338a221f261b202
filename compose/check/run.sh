#!/usr/bin/env bash
# run.sh — `make test-containers`: the static proof of the container deployment
# (compose/check/test_containers.py says what it proves). No Docker engine needed:
# installs Debian's docker-compose (its `config` validates without an engine) and
# HAProxy when missing, builds the release binaries the checks run, then runs the tests.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"

# shellcheck source=mesh/lib/common.sh
source mesh/lib/common.sh

ensure_packages docker-compose docker-compose docker-compose
mesh/mesh.sh install-haproxy

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  say "cargo build --release --bins -p switchyard -p forex (quick when up to date)"
  cargo build --release --bins -p switchyard -p forex
fi

# Debian's python3: it has PyYAML, which docker-compose itself depends on.
say "static checks of compose/, rancher/ and compose/images/ (compose/check/test_containers.py)"
exec /usr/bin/python3 compose/check/test_containers.py -v
