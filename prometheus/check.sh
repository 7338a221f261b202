#!/usr/bin/env bash
# check.sh — the static checks of prometheus/ behind `make test-prometheus`: promtool check config on both
# scrape configs, promtool check rules on rules/, and promtool test rules on the unit tests in tests/.
# Needs promtool (Debian's package `prometheus`; `mesh/mesh.sh install-prometheus` installs it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE"
# shellcheck source=mesh/lib/common.sh
source ../mesh/lib/common.sh

command -v promtool >/dev/null 2>&1 || {
  warn "promtool is missing: run 'mesh/mesh.sh install-prometheus'"
  exit 1
}

say "promtool check config prometheus-local.yml (the targets files appear when mesh.sh writes them)"
promtool check config prometheus-local.yml

# Debian builds Prometheus without Consul service discovery ("Disable Consul SD until its Debian package is
# back in shape"), so its promtool rejects consul_sd_configs, which the upstream image used in containers
# understands. Then check everything else in prometheus.yml — globals, rule files, every relabelling
# rule — on a copy whose Consul blocks are swapped for file_sd blocks of the same place, and say so.
if promtool check config prometheus.yml >/tmp/promtool-config.$$ 2>&1; then
  say "promtool check config prometheus.yml"
  cat /tmp/promtool-config.$$
elif grep -q 'field consul_sd_configs not found' /tmp/promtool-config.$$; then
  say "promtool check config prometheus.yml — this promtool has no Consul SD: checking the rest of it"
  copy=$(mktemp -d)
  trap 'rm -rf "$copy" /tmp/promtool-config.$$' EXIT
  cp -r rules "$copy/"
  sed -E -e 's/^( *)consul_sd_configs:/\1file_sd_configs:/' \
    -e 's/^( *)- server: .*/\1- files: [consul-stand-in.json]/' \
    -e '/^ *datacenter: /d' prometheus.yml >"$copy/prometheus.yml"
  grep -q consul_sd_configs "$copy/prometheus.yml" && { warn "a Consul block was not swapped"; exit 1; }
  promtool check config "$copy/prometheus.yml" 2>&1 | grep -v 'consul-stand-in.json'
else
  cat /tmp/promtool-config.$$ >&2
  rm -f /tmp/promtool-config.$$
  exit 1
fi
rm -f /tmp/promtool-config.$$

say "promtool check rules rules/*.yml"
promtool check rules rules/*.yml

say "promtool test rules tests/*.yml"
promtool test rules tests/*.yml
