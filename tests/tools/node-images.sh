#!/usr/bin/env bash
# Builds, offline, the two images the e2e node needs besides the webhook's own
# (make image): the pod sandbox ("pause", from build/pause/linux/pause.c of the
# k8s.io/kubernetes module the tools module pins, compiled statically) and a
# static busybox (Debian's busybox-static) standing in for DittoFS. Each is a
# FROM scratch image made with buildah and saved as an OCI archive into a
# folder keyed by their versions, built only when missing. No registry is
# involved. Prints the folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
kube=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")
busybox=$(command -v busybox || true)
[[ -n $busybox ]] || { echo "node-images.sh: needs a static busybox (apt-get install busybox-static)" >&2; exit 2; }
bbver=$("$busybox" 2>&1 | sed -nE '1s/^BusyBox v([^ ]+).*/\1/p')
out=${NODE_IMAGES_DIR:-$root/.bin/node-images-$kube-busybox-$bbver}
if [[ -s $out/pause.tar && -s $out/busybox.tar ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
c=
trap '[[ -z $c ]] || buildah rm "$c" >/dev/null 2>&1; rm -rf "$tmp"' EXIT

# image NAME ARCHIVE FILE... -- buildah config flags: a FROM scratch image
# holding FILEs (at the same paths), committed straight into an OCI archive.
image() {
  local name=$1 archive=$2; shift 2
  c=$(buildah from scratch)
  while [[ $1 != -- ]]; do buildah copy --quiet "$c" "$1" "$2"; shift 2; done; shift
  buildah config "$@" "$c"
  buildah commit --quiet "$c" "oci-archive:$tmp/$archive:$name" >/dev/null
  buildah rm "$c" >/dev/null; c=
}

if [[ ! -s $out/pause.tar ]]; then
  kdir=$(cd "$here/kube" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  gcc -Os -static -Wall -Werror -DVERSION="$kube-dittofs-e2e" -o "$tmp/pause" "$kdir/build/pause/linux/pause.c"
  image "localhost/dittofs-e2e/pause:$kube" pause.tar "$tmp/pause" /pause -- \
    --entrypoint '["/pause"]' --user 65535:65535
  mv "$tmp/pause.tar" "$out/"
fi
if [[ ! -s $out/busybox.tar ]]; then
  ! ldd "$busybox" >/dev/null 2>&1 || { echo "node-images.sh: $busybox is not static (busybox-static)" >&2; exit 2; }
  image "localhost/dittofs-e2e/busybox:$bbver" busybox.tar "$busybox" /bin/busybox -- \
    --entrypoint '["/bin/busybox"]'
  mv "$tmp/busybox.tar" "$out/"
fi
echo "$out"
