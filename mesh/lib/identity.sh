# shellcheck shell=bash
# identity.sh — the zero-trust material of the local mesh, in the run folder: the mesh CA ($CA_DIR: ca.pem,
# ca.key; created once per run folder, trust domain $TRUST_DOMAIN), one identity per service (instances of a
# service share it) plus `edge` for HAProxy ($IDENTITY_DIR/<name>/<name>.pem and .key, SAN URI
# spiffe://$TRUST_DOMAIN/svc/<name> and DNS <name>.$TRUST_DOMAIN; issued again on every `up`, valid
# $IDENTITY_VALID), HAProxy's cert+key file, and the admin token ($ADMIN_TOKEN_FILE, made once). Who may call
# whom is here too: each service's ingress admits only its caller. Sourced by mesh/mesh.sh after
# mesh/lib/topology.sh; the paths and settings are defined there.

# spiffe_id NAME — the identity a certificate issued for NAME carries.
spiffe_id() { printf 'spiffe://%s/svc/%s' "$TRUST_DOMAIN" "$1"; }
identity_cert() { printf '%s/%s/%s.pem' "$IDENTITY_DIR" "$1" "$1"; }
identity_key() { printf '%s/%s/%s.key' "$IDENTITY_DIR" "$1" "$1"; }
# HAProxy wants the certificate, its chain and the key in one file.
edge_haproxy_pem() { printf '%s/%s/%s-haproxy.pem' "$IDENTITY_DIR" "$EDGE_IDENTITY" "$EDGE_IDENTITY"; }

# ingress_callers SERVICE — the identities allowed to call SERVICE's ingress, one a line: the services whose
# peer it is (PEER in mesh/lib/topology.sh), and HAProxy for forex-web, the service it fronts.
ingress_callers() {
  local service=$1 caller
  [[ $service == forex-web ]] && spiffe_id "$EDGE_IDENTITY" && echo
  for caller in "${SERVICES[@]}"; do
    # shellcheck disable=SC2153 # PEER: mesh/lib/topology.sh
    [[ ${PEER[$caller]} == "$service" ]] && spiffe_id "$caller" && echo
  done
  return 0
}

# identity_tool ARGS... — `switchyard identity ARGS`, quiet unless it fails (then its output and die).
identity_tool() {
  local out
  out=$("$BIN_DIR/switchyard" identity "$@" 2>&1) || die "switchyard identity $*: $out"
  printf '%s\n' "$out"
}

# The mesh CA: kept while it is for TRUST_DOMAIN and not expired, else (re)created.
ensure_ca() {
  local shown
  if [[ -f $CA_DIR/ca.pem && -f $CA_DIR/ca.key ]]; then
    shown=$(identity_tool show "$CA_DIR/ca.pem")
    if [[ $(sed -n 's/^identity: *//p' <<<"$shown") != "spiffe://$TRUST_DOMAIN" ]]; then
      say "the mesh CA in $CA_DIR is not for spiffe://$TRUST_DOMAIN (MESH_TRUST_DOMAIN): creating a new one"
    elif grep -q '(EXPIRED)' <<<"$shown"; then
      say "the mesh CA in $CA_DIR has expired: creating a new one"
    else
      return 0
    fi
  fi
  mkdir -p "$CA_DIR"
  identity_tool ca --trust-domain "$TRUST_DOMAIN" --out "$CA_DIR" >/dev/null
  say "created the mesh CA for spiffe://$TRUST_DOMAIN in $CA_DIR"
}

# issue_identity NAME — NAME's certificate (then the CA's) and key, valid IDENTITY_VALID from now.
issue_identity() {
  local name=$1
  mkdir -p "$IDENTITY_DIR/$name"
  identity_tool issue --ca "$CA_DIR" --service "$name" --out "$IDENTITY_DIR/$name" --valid "$IDENTITY_VALID" >/dev/null
}

# The admin token: made once per run folder, 256 random bits in hex, readable by its owner only.
ensure_admin_token() {
  [[ -s $ADMIN_TOKEN_FILE ]] && return 0
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$ADMIN_TOKEN_FILE.tmp")
  mv "$ADMIN_TOKEN_FILE.tmp" "$ADMIN_TOKEN_FILE"
  say "wrote a new admin token to $ADMIN_TOKEN_FILE (admin writes need it)"
}

# identity_prepare — `up` and `render`: the CA, every identity issued afresh, HAProxy's PEM, the admin token.
identity_prepare() {
  local name pem
  mkdir -p "$IDENTITY_DIR"
  chmod 700 "$IDENTITY_DIR"
  ensure_ca
  for name in "${SERVICES[@]}" "$EDGE_IDENTITY"; do issue_identity "$name"; done
  pem=$(edge_haproxy_pem)
  (umask 077 && cat "$(identity_cert "$EDGE_IDENTITY")" "$(identity_key "$EDGE_IDENTITY")" >"$pem.tmp")
  mv "$pem.tmp" "$pem"
  say "issued identities for ${SERVICES[*]} and $EDGE_IDENTITY (HAProxy) in $IDENTITY_DIR, valid $IDENTITY_VALID"
  ensure_admin_token
}
