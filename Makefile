# switchyard — developer entry points. `make` (or `make help`) lists them.
#
# The mesh runner honours MESH_NET, RUN_DIR, SKIP_BUILD, RATE_INSTANCES… from the
# environment: see mesh/mesh.sh.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help up down status build test test-prometheus fault-test abuse-test burst-test fuzz soak bench bench-connections bench-instructions check clean-run stop-instance kill-instance start-instance restart-instance

help: ## List the targets
	@echo "switchyard: a linkerd-style service mesh, run locally"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  make %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

up: ## Build and start the mesh; the converter is then on http://127.0.0.1:8080
	@mesh/mesh.sh up

down: ## Stop every process `make up` started
	@mesh/mesh.sh down

status: ## Show what runs and what answers
	@mesh/mesh.sh status

build: ## Build the release binaries (proxy, services, load harness)
	@echo "==> cargo build --release --bins -p switchyard -p forex -p switchyard-bench"
	@$(CARGO) build --release --bins -p switchyard -p forex -p switchyard-bench

test: ## Run every test: promtool, cargo test, end-to-end, abuse, burst and fault tests, a short fuzz run, container checks
	@mesh/mesh.sh install-haproxy
	@$(MAKE) --no-print-directory test-prometheus
	@echo "==> cargo test --workspace (unit and integration tests)"
	@$(CARGO) test --workspace
	@echo "==> end-to-end test (mesh/e2e.sh)"
	@mesh/e2e.sh
	@echo "==> abuse suite: raw hostile bytes against a sidecar (mesh/abuse.sh)"
	@mesh/abuse.sh
	@echo "==> burst test: 500 concurrent clients through two sidecars (mesh/burst.sh)"
	@mesh/burst.sh
	@echo "==> fault tests over a mesh with 3 forex-rate instances (mesh/fault.sh)"
	@mesh/fault.sh
	@echo "==> a short run of every fuzz target (fuzz/run.sh, FUZZ_SECONDS=15, unoptimised build)"
	@FUZZ_SECONDS=15 FUZZ_DEV=1 fuzz/run.sh
	@$(MAKE) --no-print-directory test-containers

fault-test: ## Kill, slow, break and roll forex-rate instances under load; figures in target/fault/report.md
	@mesh/fault.sh

abuse-test: ## Hostile clients in raw bytes (slowloris, h2 floods, smuggling, bad uploads) against a sidecar
	@$(CARGO) build --release -p switchyard
	@mesh/abuse.sh

burst-test: ## 500 concurrent clients through two sidecars: no error, bounded upstream connections, memory back
	@mesh/burst.sh

fuzz: ## Run every libFuzzer target for FUZZ_SECONDS (default 120) each; crashes land in fuzz/artifacts/
	@fuzz/run.sh

soak: ## A bounded long run under load (SOAK_MINUTES=20): dtab swaps, restarts, abuse; target/soak/report.md
	@mesh/soak.sh

test-containers: ## Static proof of compose/, rancher/ and the images (no Docker engine needed)
	@compose/check/run.sh

test-prometheus: ## promtool: check both scrape configs and the rules, run the rule unit tests (prometheus/tests)
	@mesh/mesh.sh install-prometheus
	@prometheus/check.sh

bench: ## Benchmark direct / switchyard (1 hop, mesh config, 2 hops, mTLS) / HAProxy / nginx: 3 rounds, pinned and not, a 2-min memory run (~22 min); instructions per request (callgrind, ~3 min); 2,000 and 10,000 concurrent clients (~5 min); target/bench/*.md
	@BENCH_LONG_SECS=$${BENCH_LONG_SECS:-120} bench/run.sh
	@SKIP_BUILD=1 bench/callgrind.sh
	@SKIP_BUILD=1 bench/connections.sh

bench-instructions: ## Only the callgrind part of `make bench`: instructions per request and the top functions; target/bench/instructions.md
	@bench/callgrind.sh

bench-connections: ## Only the concurrent-connections part of `make bench`; table in target/bench/connections.md
	@bench/connections.sh

check: ## cargo fmt --check, clippy with warnings as errors, shellcheck on every shell script
	@echo "==> cargo fmt --all -- --check"
	@$(CARGO) fmt --all -- --check
	@echo "==> cargo clippy --workspace --all-targets -- -D warnings"
	@$(CARGO) clippy --workspace --all-targets -- -D warnings
	@mesh/mesh.sh install-shellcheck
	@mesh/check-shell.sh

stop-instance: ## Stop one instance gracefully (deregister, drain): make stop-instance I=forex-rate-2
	@mesh/mesh.sh stop "$(I)"

kill-instance: ## Crash one instance (SIGKILL, still registered): make kill-instance I=forex-rate-2
	@mesh/mesh.sh kill "$(I)"

start-instance: ## Start a stopped instance again: make start-instance I=forex-rate-2 [FOREX_FAULT_DELAY_MS=200]
	@mesh/mesh.sh start "$(I)"

restart-instance: ## Stop and start one instance: make restart-instance I=forex-rate-2
	@mesh/mesh.sh restart "$(I)"

clean-run: ## Stop the mesh and delete its run folder (./run)
	@mesh/mesh.sh clean

# --- Containers (README "Containers"): images, Docker Compose, Rancher 1.x ---------------

# Compose v2 (`docker compose`) when the plugin is installed, else docker-compose v1.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_PROJECT ?= switchyard

.PHONY: services compose-up compose-down compose-identity refresh test-containers

# The sidecars' admin token for Compose (the `admin-token` secret): made once, never committed
# (.gitignore) nor put into an image (.dockerignore). The folder is the owner's only; the file is
# readable by the container user (10001), which a bind-mounted secret needs.
ADMIN_TOKEN_FILE := compose/secrets/admin-token

services: ## Build the container images, tagged <commit time>-<hash> and latest
	@compose/images/images.sh build

compose-up: services $(ADMIN_TOKEN_FILE) ## Run everything on this Docker host with Compose; converter on localhost:80
	@echo "==> $(COMPOSE) -p $(COMPOSE_PROJECT) -f compose/docker-compose.yml up -d"
	@$(COMPOSE) -p $(COMPOSE_PROJECT) -f compose/docker-compose.yml up -d
	@echo "converter http://localhost/  HAProxy stats http://localhost:8404/stats  Consul http://localhost:8500/"
	@echo "Prometheus http://localhost:9090/  Grafana http://localhost:3000/  (make compose-down stops it)"
	@echo "admin token (dtab writes): SWITCHYARD_ADMIN_TOKEN=\$$(cat $(ADMIN_TOKEN_FILE))"

$(ADMIN_TOKEN_FILE):
	@echo "==> creating the sidecars' admin token in $@"
	@mkdir -p "$(@D)" && chmod 0700 "$(@D)"
	@umask 022 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$@.tmp" && mv "$@.tmp" "$@"

compose-identity: ## Rotate the Compose mesh's identities (same CA): sidecars re-read them, HAProxy reloads
	@echo "==> $(COMPOSE) -p $(COMPOSE_PROJECT) -f compose/docker-compose.yml run --rm identity"
	@$(COMPOSE) -p $(COMPOSE_PROJECT) -f compose/docker-compose.yml run --rm identity
	@$(COMPOSE) -p $(COMPOSE_PROJECT) -f compose/docker-compose.yml kill -s SIGHUP haproxy

compose-down: ## Stop and remove the Compose deployment (its volumes are kept)
	@$(COMPOSE) -p $(COMPOSE_PROJECT) -f compose/docker-compose.yml down

refresh: ## Rebuild the images and upgrade the Rancher forex stack in place (rancher-compose)
	@command -v rancher-compose >/dev/null || { echo "refresh: rancher-compose is not on PATH (Rancher UI: footer → CLI)" >&2; exit 1; }
	@[[ -n "$${RANCHER_URL:-}" ]] || { echo "refresh: set RANCHER_URL, RANCHER_ACCESS_KEY, RANCHER_SECRET_KEY" >&2; exit 1; }
	@compose/images/images.sh build
	@if [[ -n "$${IMAGE_PREFIX:-}" ]]; then compose/images/images.sh push; \
	  else echo "==> IMAGE_PREFIX unset: not pushing (fine for a single-host Rancher)"; fi
	@export TAG=$$(compose/images/images.sh version); \
	  echo "==> upgrading the forex stack to $$TAG (rolling, start first)"; \
	  cd rancher/forex && rancher-compose -p forex up -d --upgrade --confirm-upgrade
