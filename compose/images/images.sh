#!/usr/bin/env bash
# images.sh — the container images of switchyard and the forex services, in one list
# that `make services`, `make refresh` and the static checks (compose/check/) share.
#
#   compose/images/images.sh list       NAME DOCKERFILE [BUILD_ARG=VALUE] per line
#   compose/images/images.sh version    the version tag: UTC commit time + short hash
#   compose/images/images.sh build      build every image, tagged <version> and latest
#   compose/images/images.sh push       push both tags (set IMAGE_PREFIX to your registry)
#
# The build context is always the repository root (the Rust workspace); .dockerignore
# keeps target/ and run/ out of it. IMAGE_PREFIX (e.g. "<registry>/forex/")
# is put before every name, for hosts that pull from a registry (Rancher).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IMAGE_PREFIX=${IMAGE_PREFIX:-}
DOCKER=${DOCKER:-docker}

# NAME DOCKERFILE [BUILD_ARG=VALUE...]; paths relative to the repository root.
images() {
  cat <<'LIST'
switchyard compose/images/switchyard.Dockerfile
forex-rate compose/images/service.Dockerfile SERVICE=forex-rate
forex-converter compose/images/service.Dockerfile SERVICE=forex-converter
forex-web compose/images/service.Dockerfile SERVICE=forex-web
switchyard-prometheus compose/images/prometheus.Dockerfile
switchyard-grafana compose/images/grafana.Dockerfile
LIST
}

# 20250102150405-abc1234 (UTC commit time, short hash), "-dirty" with uncommitted changes.
version() {
  local stamp hash dirty=""
  stamp=$(TZ=UTC git -C "$REPO_ROOT" log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd)
  hash=$(git -C "$REPO_ROOT" rev-parse --short HEAD)
  [[ -z $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no) ]] || dirty=-dirty
  printf '%s-%s%s\n' "$stamp" "$hash" "$dirty"
}

build() {
  local tag name file args arg
  tag=$(version)
  command -v "$DOCKER" >/dev/null || { echo "images.sh: '$DOCKER' is not installed" >&2; exit 1; }
  while read -r name file args; do
    local build_args=()
    for arg in $args; do build_args+=(--build-arg "$arg"); done
    echo "==> building $IMAGE_PREFIX$name:$tag (and :latest) from $file"
    "$DOCKER" build -f "$REPO_ROOT/$file" "${build_args[@]}" \
      --label "org.opencontainers.image.version=$tag" \
      --label "org.opencontainers.image.revision=$(git -C "$REPO_ROOT" rev-parse HEAD)" \
      -t "$IMAGE_PREFIX$name:$tag" -t "$IMAGE_PREFIX$name:latest" "$REPO_ROOT"
  done < <(images)
  echo "==> built $(images | wc -l) images, tags $tag and latest"
}

push() {
  local tag name _rest
  tag=$(version)
  [[ -n $IMAGE_PREFIX ]] || { echo "images.sh push: set IMAGE_PREFIX=<registry>/<path>/ first" >&2; exit 1; }
  while read -r name _rest; do
    "$DOCKER" push "$IMAGE_PREFIX$name:$tag"
    "$DOCKER" push "$IMAGE_PREFIX$name:latest"
  done < <(images)
}

case ${1:-help} in
  list) images ;;
  version) version ;;
  build) build ;;
  push) push ;;
  *)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 64
    ;;
esac
