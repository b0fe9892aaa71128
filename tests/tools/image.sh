#!/usr/bin/env bash
# make image: builds the project's Dockerfile with podman (buildah inside; no
# daemon, no registry) into the local image store as dittofs-webhook:VERSION,
# and saves it as an OCI archive, bin/dittofs-webhook-image.tar.
#
# The Dockerfile's base images are build args. When the defaults (the public
# golang and distroless static images) cannot be pulled — always on the
# project's machines, which reach no registry — local stand-ins are built
# first, offline, with buildah from files of this machine:
#   builder: the machine's own Go toolchain (/usr/local/go) and a static
#            busybox as /bin/sh (the Dockerfile's RUN steps need a shell);
#   base:    what distroless static holds: CA certificates, tzdata,
#            /etc/passwd and /etc/group with nonroot 65532, /tmp.
# Go modules come from this machine's module cache, mounted read only and
# used as GOPROXY (file://): the build reaches no network either.
#
# IMAGE_PULL=never (what `make test` sets) never tries a pull: a base that is
# not in the local store is replaced by its stand-in at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
VERSION=${VERSION:-dev}
IMAGE=${IMAGE:-dittofs-webhook:$VERSION}
GO_VERSION=$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')
BUILDER_IMAGE=${BUILDER_IMAGE:-docker.io/library/golang:$GO_VERSION}
BASE_IMAGE=${BASE_IMAGE:-gcr.io/distroless/static-debian12:nonroot}
standin_builder=localhost/dittofs-stand-in/golang:$(go env GOVERSION)
standin_base=localhost/dittofs-stand-in/static:nonroot

IMAGE_PULL=${IMAGE_PULL:-missing}
pullable() {
  podman image exists "$1" && return 0
  [[ $IMAGE_PULL != never ]] && timeout 30 podman pull -q "$1" >/dev/null 2>&1
}

if ! pullable "$BUILDER_IMAGE"; then
  echo "image.sh: $BUILDER_IMAGE cannot be pulled; using the stand-in $standin_builder" >&2
  BUILDER_IMAGE=$standin_builder
  if ! podman image exists "$BUILDER_IMAGE"; then
    command -v busybox >/dev/null || { echo "image.sh: the builder stand-in needs a static busybox (apt-get install busybox-static)" >&2; exit 2; }
    c=$(buildah from scratch)
    trap 'buildah rm "$c" >/dev/null 2>&1 || true' EXIT
    buildah copy --quiet "$c" "$(go env GOROOT)" /usr/local/go
    buildah copy --quiet "$c" "$(command -v busybox)" /bin/busybox
    buildah run --isolation chroot "$c" -- /bin/busybox --install -s /bin
    buildah copy --quiet "$c" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
    buildah run --isolation chroot "$c" -- /bin/mkdir -p -m 1777 /tmp
    buildah config --env PATH=/usr/local/go/bin:/go/bin:/bin --env GOPATH=/go --env HOME=/root \
      --label org.opencontainers.image.description="dittofs-webhook's stand-in for golang:$GO_VERSION, from this machine's Go toolchain" "$c"
    buildah commit --quiet "$c" "$BUILDER_IMAGE" >/dev/null
    buildah rm "$c" >/dev/null; trap - EXIT
  fi
fi

if ! pullable "$BASE_IMAGE"; then
  echo "image.sh: $BASE_IMAGE cannot be pulled; using the stand-in $standin_base" >&2
  BASE_IMAGE=$standin_base
  if ! podman image exists "$BASE_IMAGE"; then
    files=$(mktemp -d)
    mkdir -p "$files/etc/ssl/certs" "$files/usr/share" "$files/tmp" "$files/home/nonroot"
    chmod 1777 "$files/tmp"; chown 65532:65532 "$files/home/nonroot"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$files/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$files/etc/group"
    cp /etc/ssl/certs/ca-certificates.crt "$files/etc/ssl/certs/"
    cp -a /usr/share/zoneinfo "$files/usr/share/"
    c=$(buildah from scratch)
    trap 'buildah rm "$c" >/dev/null 2>&1 || true; rm -rf "$files"' EXIT
    buildah copy --quiet "$c" "$files" /
    buildah config --user 65532:65532 --workingdir /home/nonroot --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
      --label org.opencontainers.image.description="dittofs-webhook's stand-in for distroless static nonroot, from Debian's ca-certificates and tzdata" "$c"
    buildah commit --quiet "$c" "$BASE_IMAGE" >/dev/null
    buildah rm "$c" >/dev/null; rm -rf "$files"; trap - EXIT
  fi
fi

(cd "$root" && go mod download)
modcache=$(go env GOMODCACHE)
# --network none: RUN steps need no network (modules come from the cache
# mount), and podman's default network is 10.88.0.0/16 with masquerading.
podman build --quiet --network none \
  --build-arg VERSION="$VERSION" --build-arg GO_VERSION="$GO_VERSION" \
  --build-arg TARGETOS=linux --build-arg TARGETARCH="$(go env GOARCH)" \
  --build-arg BUILDER_IMAGE="$BUILDER_IMAGE" --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg GOPROXY=file:///gomodcache/cache/download \
  --volume "$modcache:/gomodcache:ro" \
  --tag "$IMAGE" "$root" >/dev/null
mkdir -p "$root/bin"
rm -f "$root/bin/dittofs-webhook-image.tar"
podman save --quiet --format oci-archive -o "$root/bin/dittofs-webhook-image.tar" "$IMAGE"
podman image inspect --format '{{.Id}}' "$IMAGE"
