# switchyard — developer entry points. `make` (or `make help`) lists them.
#
# The mesh runner honours MESH_NET, RUN_DIR, SKIP_BUILD, RATE_INSTANCES… from the
# environment: see mesh/mesh.sh.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help up down status build test bench check clean-run

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

test: ## Run every test: cargo test --workspace, then the end-to-end test on a private mesh
	@mesh/mesh.sh install-haproxy
	@echo "==> cargo test --workspace (unit and integration tests)"
	@$(CARGO) test --workspace
	@echo "==> end-to-end test (mesh/e2e.sh)"
	@mesh/e2e.sh

bench: ## Benchmark direct / 1 hop / 2 hops / HAProxy; table in target/bench/latest.md
	@bench/run.sh

check: ## cargo fmt --check and clippy with warnings as errors
	@echo "==> cargo fmt --all -- --check"
	@$(CARGO) fmt --all -- --check
	@echo "==> cargo clippy --workspace --all-targets -- -D warnings"
	@$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-run: ## Stop the mesh and delete its run folder (./run)
	@mesh/mesh.sh clean
