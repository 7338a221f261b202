# shellcheck shell=bash
# haproxy.sh — HAProxy, the mesh's public entry point: installing it (Debian's package) and starting it on
# $MESH_NET.0.1:8080 in front of forex-web's ingress sidecars (its config is rendered by mesh/lib/render.sh).
# Sourced by mesh/mesh.sh.

install_haproxy() {
  ensure_packages HAProxy haproxy haproxy
}

start_haproxy() {
  say "starting HAProxy on $PUBLIC_IP:$PUBLIC_PORT in front of forex-web's ingress sidecar"
  # -db: stay in the foreground (we detach it ourselves) and log to stdout → haproxy.log.
  start_process "$HAPROXY_DIR" "$(command -v haproxy)" -db -f "$HAPROXY_DIR/haproxy.cfg"
  wait_http "http://$PUBLIC_IP:$PUBLIC_PORT/health" "HAProxy → forex-web" "$HAPROXY_DIR/haproxy.pid"
}
