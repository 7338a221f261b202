# shellcheck shell=bash
# instances.sh — one instance of a service (its app and its sidecar, on the instance's own address):
# starting it, waiting until both answer, and the instance commands of mesh.sh — stop (deregister, let the
# sidecars notice, TERM), kill (KILL, registry untouched), start (start, wait, register) and restart.
# Registration goes to the registry `up` used (mesh/lib/registry.sh). Sourced by mesh/mesh.sh.

start_instance() {
  local service=$1 i=$2 ip dir peer args
  ip=$(instance_ip "$service" "$i")
  dir=$(instance_dir "$service" "$i")
  # shellcheck disable=SC2153 # PEER: mesh/lib/topology.sh
  peer=${PEER[$service]}
  args=(--listen "$ip:$APP_PORT")
  # Apps reach their peer through their own egress sidecar, naming it by Host.
  [[ -n $peer ]] && args+=(--peer "http://$ip:$EGRESS_PORT" --peer-name "$peer")
  say "starting $service-$i on $ip (app :$APP_PORT, sidecar :$INGRESS_PORT/:$EGRESS_PORT/:$ADMIN_PORT)"
  start_process "$dir" "$BIN_DIR/$service" "${args[@]}"
  start_process "$dir" "$BIN_DIR/switchyard" run "$dir/sidecar.yaml"
}

wait_instance() {
  local service=$1 i=$2 ip dir
  ip=$(instance_ip "$service" "$i")
  dir=$(instance_dir "$service" "$i")
  wait_http "http://$ip:$APP_PORT/health" "$service-$i app" "$dir/$service.pid"
  wait_http "http://$ip:$ADMIN_PORT/admin/ready" "$service-$i sidecar" "$dir/switchyard.pid"
}

# `up`: every instance, service by service (the file registry already lists them; Consul learns of each
# instance once it answers).
start_services() {
  local service i n
  for service in "${SERVICES[@]}"; do
    n=${INSTANCES[$service]}
    for ((i = 1; i <= n; i++)); do start_instance "$service" "$i"; done
    for ((i = 1; i <= n; i++)); do wait_instance "$service" "$i"; done
    for ((i = 1; i <= n; i++)); do consul_register "$service" "$i"; done
  done
}

# instance_command stop|kill|start|restart NAME — for demos and the fault tests (mesh/fault_test.py).
instance_command() {
  local action=$1 name=$2 ip dir entry
  parse_instance "$name"
  registry_recorded_mode
  ip=$(instance_ip "$INSTANCE_SERVICE" "$INSTANCE_INDEX")
  dir=$(instance_dir "$INSTANCE_SERVICE" "$INSTANCE_INDEX")
  entry="$ip:$INGRESS_PORT"
  case $action in
    stop | restart)
      say "deregistering $name ($entry)$(registry_where) and waiting for the sidecars to notice"
      registry_remove "$INSTANCE_SERVICE" "$INSTANCE_INDEX"
      sleep 1
      say "stopping $name: sidecar (drains in-flight requests), then the app"
      stop_processes TERM "$dir/switchyard.pid"
      stop_processes TERM "$dir/$INSTANCE_SERVICE.pid"
      ;;
    kill)
      say "killing $name (app and sidecar, SIGKILL; the registry still lists it, as after a crash)"
      stop_processes KILL "$dir/$INSTANCE_SERVICE.pid" "$dir/switchyard.pid"
      ;;
  esac
  case $action in
    start | restart)
      pid_alive "$dir/switchyard.pid" && die "$name is already running"
      start_instance "$INSTANCE_SERVICE" "$INSTANCE_INDEX"
      wait_instance "$INSTANCE_SERVICE" "$INSTANCE_INDEX"
      registry_add "$INSTANCE_SERVICE" "$INSTANCE_INDEX"
      say "$name is up and registered"
      ;;
  esac
}
