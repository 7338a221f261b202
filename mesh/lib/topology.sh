# shellcheck shell=bash
# topology.sh — what the local mesh is made of and where everything lives: the settings mesh.sh reads from
# the environment, the ports, the services and their instances, every instance's address and run folder.
# Sourced by mesh/mesh.sh after mesh/lib/common.sh (needs REPO_ROOT).
# shellcheck disable=SC2034 # the settings are read by the other modules, not here

MESH_DIR="$REPO_ROOT/mesh"
MESH_NET=${MESH_NET:-127.0}
RUN_DIR=${RUN_DIR:-run}
BIN_DIR=${BIN_DIR:-target/release}
WAIT_SECS=${WAIT_SECS:-30}
# Relative paths are relative to the repository root, wherever the script is run from.
[[ $RUN_DIR == /* ]] || RUN_DIR="$REPO_ROOT/$RUN_DIR"
[[ $BIN_DIR == /* ]] || BIN_DIR="$REPO_ROOT/$BIN_DIR"

APP_PORT=8080
INGRESS_PORT=4140
EGRESS_PORT=4141
ADMIN_PORT=9990
PUBLIC_PORT=8080
STATS_PORT=8404
PROMETHEUS_PORT=9090

# Start order: a service starts after the peers it calls.
SERVICES=(forex-rate forex-converter forex-web)
declare -A OCTET=([forex-web]=1 [forex-converter]=2 [forex-rate]=3)
declare -A PEER=([forex-web]=forex-converter [forex-converter]=forex-rate [forex-rate]="")
declare -A INSTANCES=(
  [forex-web]=${WEB_INSTANCES:-1}
  [forex-converter]=${CONVERTER_INSTANCES:-1}
  [forex-rate]=${RATE_INSTANCES:-1}
)

PUBLIC_IP="$MESH_NET.0.1"
REGISTRY_DIR="$RUN_DIR/registry"
# The mesh-wide egress dtab (file store) and, with CONSUL, what this run registered there.
DTAB_DIR="$RUN_DIR/dtabs"
CONSUL=${CONSUL:-}
CONSUL_IDS="$RUN_DIR/consul-registrations"
HAPROXY_DIR="$RUN_DIR/haproxy"
PROMETHEUS_DIR="$RUN_DIR/prometheus"
WITH_PROMETHEUS=${PROMETHEUS:-1}
# Zero trust (mesh/lib/identity.sh): the mesh CA, one identity per service and one for HAProxy (`edge`),
# named spiffe://$TRUST_DOMAIN/svc/<name>, and the token admin writes need.
TRUST_DOMAIN=${MESH_TRUST_DOMAIN:-switchyard.local}
IDENTITY_VALID=${MESH_IDENTITY_VALID:-24h}
IDENTITY_DIR="$RUN_DIR/identity"
CA_DIR="$IDENTITY_DIR/ca"
EDGE_IDENTITY=edge
ADMIN_TOKEN_FILE="$RUN_DIR/admin-token"

instance_ip() { printf '%s.%s.%s' "$MESH_NET" "${OCTET[$1]}" "$2"; }
instance_dir() { printf '%s/%s-%s' "$RUN_DIR" "$1" "$2"; }

# Prints "service index" for every instance, in start order.
each_instance() {
  local service i
  for service in "${SERVICES[@]}"; do
    for ((i = 1; i <= INSTANCES[$service]; i++)); do
      printf '%s %s\n' "$service" "$i"
    done
  done
}

validate_settings() {
  [[ $MESH_NET =~ ^127\.[0-9]{1,3}$ ]] || die "MESH_NET must look like 127.N (got '$MESH_NET')"
  [[ $WAIT_SECS =~ ^[0-9]+$ ]] || die "WAIT_SECS must be a number of seconds"
  validate_consul
  [[ $WITH_PROMETHEUS =~ ^[01]$ ]] || die "PROMETHEUS must be 0 or 1 (got '$WITH_PROMETHEUS')"
  [[ $TRUST_DOMAIN =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$ ]] ||
    die "MESH_TRUST_DOMAIN must be a lower-case DNS name such as switchyard.local (got '$TRUST_DOMAIN')"
  [[ $IDENTITY_VALID =~ ^[1-9][0-9]*[smhd]$ ]] ||
    die "MESH_IDENTITY_VALID must be a duration such as 24h, 90m or 7d (got '$IDENTITY_VALID')"
  local service
  for service in "${SERVICES[@]}"; do
    [[ ${INSTANCES[$service]} =~ ^[1-9][0-9]?$ ]] ||
      die "instances of $service must be between 1 and 99 (got '${INSTANCES[$service]}')"
  done
}

# validate_consul — CONSUL is empty or http://HOST:PORT; sets CONSUL_HOST and CONSUL_PORT.
validate_consul() {
  [[ -n $CONSUL ]] || return 0
  [[ $CONSUL =~ ^http://([^/:]+):([0-9]+)/?$ ]] || die "CONSUL must look like http://HOST:PORT (got '$CONSUL')"
  CONSUL_HOST=${BASH_REMATCH[1]}
  CONSUL_PORT=${BASH_REMATCH[2]}
  CONSUL=http://$CONSUL_HOST:$CONSUL_PORT
}

# parse_instance NAME — sets INSTANCE_SERVICE and INSTANCE_INDEX from e.g. forex-rate-2.
parse_instance() {
  [[ ${1:-} =~ ^(forex-web|forex-converter|forex-rate)-([1-9][0-9]?)$ ]] ||
    die "expected an instance such as forex-rate-2, got '${1:-}'"
  INSTANCE_SERVICE=${BASH_REMATCH[1]}
  INSTANCE_INDEX=${BASH_REMATCH[2]}
  [[ -f $(instance_dir "$INSTANCE_SERVICE" "$INSTANCE_INDEX")/sidecar.yaml ]] ||
    die "$1 is not part of the mesh in $RUN_DIR (start it with ${INSTANCE_SERVICE#forex-}_INSTANCES=$INSTANCE_INDEX or more: make up RATE_INSTANCES=N)"
}
