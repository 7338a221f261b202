# shellcheck shell=bash
# render.sh — the files written into the run folder before anything starts: every instance's sidecar config
# and HAProxy's config (from mesh/sidecar.yaml.tmpl and mesh/haproxy.cfg.tmpl), their checks (switchyard
# check, haproxy -c), and mesh.env (every URL of the mesh, for scripts). Sourced by mesh/mesh.sh after
# mesh/lib/registry.sh (discovery_settings fills the discovery blocks) and mesh/lib/identity.sh (the
# certificates, who may call whom, the admin token).

# Bash 5.2 would treat '&' in a ${var//pattern/replacement} replacement as "the match".
shopt -u patsub_replacement 2>/dev/null || true

# render TEMPLATE OUTPUT KEY=VALUE... — replaces every @KEY@; plain bash, no sed/envsubst.
render() {
  local template=$1 output=$2 text pair key value
  shift 2
  text=$(<"$template")
  for pair in "$@"; do
    key=${pair%%=*}
    value=${pair#*=}
    text=${text//"@$key@"/"$value"}
  done
  if [[ $text =~ @[A-Z_]+@ ]]; then
    die "$template: no value for ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$text" >"$output.tmp"
  mv "$output.tmp" "$output"
}

render_configs() {
  local service i ip dir clear_context error_detail allow servers="" edge_tls
  discovery_settings
  # HAProxy calls forex-web's ingress sidecars over mutual TLS as `edge`, and checks that they are forex-web.
  edge_tls="ssl crt $(edge_haproxy_pem) ca-file $CA_DIR/ca.pem verify required verifyhost forex-web.$TRUST_DOMAIN"
  edge_tls+=" alpn http/1.1"
  while read -r service i; do
    ip=$(instance_ip "$service" "$i")
    dir=$(instance_dir "$service" "$i")
    mkdir -p "$dir"
    # Who may call an ingress at all is decided by identity (mutual TLS + authorization: ingress_callers in
    # mesh/lib/identity.sh), and the allowed caller's l5d-* context is honoured. Only forex-web's ingress
    # faces the outside (via HAProxy): it drops any l5d-* context a browser might send.
    clear_context=false error_detail=full
    [[ $service == forex-web ]] && clear_context=true error_detail=generic
    allow=$(ingress_callers "$service" | paste -sd ,)
    render "$MESH_DIR/sidecar.yaml.tmpl" "$dir/sidecar.yaml" \
      INSTANCE="$service-$i" IP="$ip" ADMIN_PORT="$ADMIN_PORT" REGISTRY_DIR="$REGISTRY_DIR" \
      APP_PORT="$APP_PORT" INGRESS_PORT="$INGRESS_PORT" EGRESS_PORT="$EGRESS_PORT" \
      INGRESS_CLEAR_CONTEXT="$clear_context" INGRESS_ERROR_DETAIL="$error_detail" NAMERS="$NAMERS_BLOCK" EGRESS_DTAB="$EGRESS_DTAB" \
      DTAB_STORE="$DTAB_STORE_BLOCK" LOG_DIR="$dir" ADMIN_TOKEN_FILE="$ADMIN_TOKEN_FILE" \
      SPIFFE_ID="$(spiffe_id "$service")" IDENTITY_CERT="$(identity_cert "$service")" \
      IDENTITY_KEY="$(identity_key "$service")" CA_CERT="$CA_DIR/ca.pem" INGRESS_ALLOW="${allow//,/, }" \
      CLIENT_TLS_PREFIX="$CLIENT_TLS_PREFIX" TRUST_DOMAIN="$TRUST_DOMAIN"
    if [[ $service == forex-web ]]; then
      servers+="    server $service-$i $ip:$INGRESS_PORT check $edge_tls"$'\n'
    fi
  done < <(each_instance)
  mkdir -p "$HAPROXY_DIR"
  render "$MESH_DIR/haproxy.cfg.tmpl" "$HAPROXY_DIR/haproxy.cfg" \
    PUBLIC_IP="$PUBLIC_IP" PUBLIC_PORT="$PUBLIC_PORT" STATS_PORT="$STATS_PORT" \
    WEB_SERVERS="${servers%$'\n'}"
  say "rendered sidecar configs and $HAPROXY_DIR/haproxy.cfg"
}

check_configs() {
  local service i dir
  say "checking every config before starting anything"
  while read -r service i; do
    dir=$(instance_dir "$service" "$i")
    "$BIN_DIR/switchyard" check "$dir/sidecar.yaml" ||
      die "switchyard check rejected $dir/sidecar.yaml (see above)"
  done < <(each_instance)
  haproxy -c -q -f "$HAPROXY_DIR/haproxy.cfg" || die "haproxy -c rejected $HAPROXY_DIR/haproxy.cfg"
}

write_env() {
  local service i ip var
  {
    echo "# The forex mesh in $RUN_DIR (written by mesh/mesh.sh up)."
    echo "MESH_NET=$MESH_NET"
    echo "RUN_DIR=$RUN_DIR"
    echo "PUBLIC_URL=http://$PUBLIC_IP:$PUBLIC_PORT"
    echo "HAPROXY_STATS_URL=http://$PUBLIC_IP:$STATS_PORT/stats"
    while read -r service i; do
      ip=$(instance_ip "$service" "$i")
      var=$(tr 'a-z-' 'A-Z_' <<<"$service")_$i
      echo "${var}_APP=http://$ip:$APP_PORT"
      echo "${var}_INGRESS=http://$ip:$INGRESS_PORT"
      echo "${var}_EGRESS=http://$ip:$EGRESS_PORT"
      echo "${var}_ADMIN=http://$ip:$ADMIN_PORT"
    done < <(each_instance)
    echo "TRUST_DOMAIN=$TRUST_DOMAIN"
    echo "IDENTITY_DIR=$IDENTITY_DIR"
    echo "CA_CERT=$CA_DIR/ca.pem"
    echo "ADMIN_TOKEN_FILE=$ADMIN_TOKEN_FILE"
  } >"$RUN_DIR/mesh.env.tmp"
  mv "$RUN_DIR/mesh.env.tmp" "$RUN_DIR/mesh.env"
}
