# shellcheck shell=bash
# registry.sh — service discovery for the local mesh (the role of Consul + registrator in containers): either
# the file registry ($RUN_DIR/registry/<service>, one ingress IP:PORT per line) and the dtab file
# $RUN_DIR/dtabs/egress, or — with CONSUL=http://HOST:PORT — a Consul agent's service catalog and the KV key
# switchyard/dtabs/egress. `up` records the mode in the run folder (registry-mode, and consul-agent for
# Consul), so the instance commands and `down` act on the same registry however they are invoked.
# Sourced by mesh/mesh.sh after mesh/lib/topology.sh.

REGISTRY_MODE_FILE="$RUN_DIR/registry-mode"
CONSUL_AGENT_FILE="$RUN_DIR/consul-agent"

# registry_prepare — `up`: writes the file registry and the mesh-wide egress dtab, and records the mode.
registry_prepare() {
  write_registry
  write_mesh_dtab
  if [[ -n $CONSUL ]]; then
    printf '%s\n' "$CONSUL" >"$CONSUL_AGENT_FILE"
    : >"$CONSUL_IDS"
    echo consul >"$REGISTRY_MODE_FILE"
  else
    echo file >"$REGISTRY_MODE_FILE"
  fi
}

# registry_recorded_mode — the instance commands: use the registry `up` used (the CONSUL of this shell is
# ignored when it differs). Without a record (a mesh started before modes were recorded): CONSUL as given.
registry_recorded_mode() {
  local mode given=$CONSUL
  [[ -f $REGISTRY_MODE_FILE ]] || return 0
  mode=$(<"$REGISTRY_MODE_FILE")
  if [[ $mode == consul ]]; then
    CONSUL=$(<"$CONSUL_AGENT_FILE")
  else
    CONSUL=
  fi
  [[ -z $given || $given == "$CONSUL" ]] ||
    warn "the mesh in $RUN_DIR was started with ${CONSUL:-the file registry}: using that, not CONSUL=$given"
  validate_consul
}

# registry_where — " from Consul at URL" in Consul mode, nothing with the file registry (for messages).
registry_where() {
  [[ -z $CONSUL ]] || printf ' from Consul at %s' "$CONSUL"
}

# registry_add SERVICE INDEX / registry_remove SERVICE INDEX — one instance joins or leaves the registry.
registry_add() {
  if [[ -n $CONSUL ]]; then
    consul_register "$1" "$2"
  else
    registry_edit "$1" add "$(instance_ip "$1" "$2"):$INGRESS_PORT"
  fi
}

registry_remove() {
  if [[ -n $CONSUL ]]; then
    consul_deregister_instance "$1" "$2"
  else
    registry_edit "$1" remove "$(instance_ip "$1" "$2"):$INGRESS_PORT"
  fi
}

# ---------------------------------------------------------------------------
# The file registry

# Writes every service's file. Written beside and renamed, so a watcher never reads a half-written file;
# the temporary lives outside registry/ so it is never mistaken for a service.
write_registry() {
  local service i n tmp="$RUN_DIR/.registry-tmp"
  mkdir -p "$REGISTRY_DIR" "$tmp"
  for service in "${SERVICES[@]}"; do
    : >"$tmp/$service"
    n=${INSTANCES[$service]}
    for ((i = 1; i <= n; i++)); do
      printf '%s:%s\n' "$(instance_ip "$service" "$i")" "$INGRESS_PORT" >>"$tmp/$service"
    done
    mv "$tmp/$service" "$REGISTRY_DIR/$service"
  done
  rmdir "$tmp"
  say "wrote the service registry in $REGISTRY_DIR"
}

# registry_edit SERVICE add|remove LINE — rewrites the service's registry file atomically.
registry_edit() {
  local service=$1 op=$2 line=$3 file="$REGISTRY_DIR/$1" tmp="$RUN_DIR/.registry-edit"
  touch "$file"
  grep -vxF -- "$line" "$file" >"$tmp" || true
  [[ $op == add ]] && printf '%s\n' "$line" >>"$tmp"
  sort -o "$tmp" "$tmp"
  mv "$tmp" "$file"
}

# ---------------------------------------------------------------------------
# What the sidecars are told, and the mesh-wide dtab

# Discovery blocks of the sidecar template: the file registry, or the Consul agent at CONSUL.
# Sets NAMERS_BLOCK, EGRESS_DTAB, DTAB_STORE_BLOCK and CLIENT_TLS_PREFIX (the bound names a peer's ingress has,
# `{service}` capturing the name its certificate carries) for render_configs.
# shellcheck disable=SC2034
discovery_settings() {
  if [[ -n $CONSUL ]]; then
    NAMERS_BLOCK="# Peers from Consul (registered by mesh.sh as registrator would: <service>, <service>-admin).
- kind: io.l5d.consul
  host: $CONSUL_HOST
  port: $CONSUL_PORT
  includeTag: false
  useHealthCheck: true
  setHost: false"
    EGRESS_DTAB="/svc => /#/io.l5d.consul/.local;"
    CLIENT_TLS_PREFIX="/#/io.l5d.consul/*/{service}"
    DTAB_STORE_BLOCK="    kind: io.l5d.consul
    host: $CONSUL_HOST
    port: $CONSUL_PORT
    key: switchyard/dtabs/egress"
  else
    NAMERS_BLOCK="# The local stand-in for Consul + registrator: mesh.sh writes one file per service
# into this directory, one \"IP:PORT\" line per instance's ingress sidecar.
- kind: io.l5d.fs
  rootDir: $REGISTRY_DIR"
    EGRESS_DTAB="/svc => /#/io.l5d.fs;"
    CLIENT_TLS_PREFIX="/#/io.l5d.fs/{service}"
    DTAB_STORE_BLOCK="    kind: io.l5d.fs
    path: $DTAB_DIR/egress"
  fi
}

# The mesh-wide egress dtab starts as the default: a fresh file, or the Consul KV key.
write_mesh_dtab() {
  discovery_settings
  if [[ -n $CONSUL ]]; then
    curl -fsS -o /dev/null --max-time 5 -X PUT --data-binary "$EGRESS_DTAB" "$CONSUL/v1/kv/switchyard/dtabs/egress" ||
      die "cannot write the KV key switchyard/dtabs/egress to the Consul agent at $CONSUL"
    say "wrote the mesh-wide egress dtab to Consul KV switchyard/dtabs/egress"
  else
    mkdir -p "$DTAB_DIR"
    printf '%s\n' "$EGRESS_DTAB" >"$DTAB_DIR/.egress.tmp"
    mv "$DTAB_DIR/.egress.tmp" "$DTAB_DIR/egress"
    say "wrote the mesh-wide egress dtab in $DTAB_DIR/egress"
  fi
}

# ---------------------------------------------------------------------------
# Consul's agent API

# consul_id SERVICE INDEX PORT — the service ID this mesh registers an instance's port under.
consul_id() { printf 'mesh-%s:%s-%s:%s' "$MESH_NET" "$1" "$2" "$3"; }

# consul_register SERVICE INDEX — the instance's ingress and admin ports, as registrator names them
# (SERVICE_4140_NAME=<service>, SERVICE_9990_NAME=<service>-admin), each with an HTTP check on the
# sidecar's /admin/ready, recorded in CONSUL_IDS for `down`. No-op without CONSUL.
consul_register() {
  [[ -n $CONSUL ]] || return 0
  local service=$1 i=$2 ip name port id check
  ip=$(instance_ip "$service" "$i")
  check="{\"HTTP\": \"http://$ip:$ADMIN_PORT/admin/ready\", \"Interval\": \"1s\", \"Timeout\": \"1s\"}"
  for name in "$service" "$service-admin"; do
    port=$INGRESS_PORT
    [[ $name == *-admin ]] && port=$ADMIN_PORT
    id=$(consul_id "$service" "$i" "$port")
    curl -fsS -o /dev/null --max-time 5 -X PUT --data-binary \
      "{\"ID\": \"$id\", \"Name\": \"$name\", \"Address\": \"$ip\", \"Port\": $port, \"Check\": $check}" \
      "$CONSUL/v1/agent/service/register" || die "Consul at $CONSUL refused to register $id"
    consul_ids_drop "$id"
    printf '%s\n' "$id" >>"$CONSUL_IDS"
  done
  printf '    %-34s registered in Consul as %s, %s-admin\n' "$service-$i" "$service" "$service"
}

# consul_deregister_instance SERVICE INDEX — removes both of the instance's services (a failure is only
# reported: the instance is stopped all the same).
consul_deregister_instance() {
  local service=$1 i=$2 port id
  for port in "$INGRESS_PORT" "$ADMIN_PORT"; do
    id=$(consul_id "$service" "$i" "$port")
    if curl -fsS -o /dev/null --max-time 5 -X PUT "$CONSUL/v1/agent/service/deregister/$id"; then
      consul_ids_drop "$id"
    else
      warn "could not deregister $id from $CONSUL"
    fi
  done
}

# consul_ids_drop ID — ID is no longer registered by this mesh.
consul_ids_drop() {
  [[ -f $CONSUL_IDS ]] || return 0
  grep -vxF -- "$1" "$CONSUL_IDS" >"$CONSUL_IDS.tmp" || true
  mv "$CONSUL_IDS.tmp" "$CONSUL_IDS"
}

# Removes every service this RUN_DIR registered (down), so traffic moves away before the processes stop.
consul_deregister() {
  [[ -f $CONSUL_IDS ]] || return 0
  local id agent
  agent=$(<"$CONSUL_AGENT_FILE")
  while read -r id; do
    [[ -n $id ]] || continue
    curl -fsS -o /dev/null --max-time 5 -X PUT "$agent/v1/agent/service/deregister/$id" ||
      warn "could not deregister $id from $agent"
  done <"$CONSUL_IDS"
  say "deregistered this mesh's services from Consul at $agent"
  rm -f "$CONSUL_IDS"
}
