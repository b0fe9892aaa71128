#!/usr/bin/env bash
# Builds the control-plane binaries the end-to-end tests run — kube-apiserver,
# kube-controller-manager and kubectl from the k8s.io/kubernetes Go module, etcd
# from go.etcd.io/etcd/server — into a version-keyed folder, building only the
# binaries that folder lacks. Only the Go module proxy is needed. Prints the
# folder (KUBEBUILDER_ASSETS).
#
# KUBE_VERSION (default: the newest, which CI runs) picks the Kubernetes
# release: each minor has its own tools module, kube/ for the newest and
# kube-1.MINOR/ for older ones, whose go.mod pins that exact release.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# Versions are written once, in the tools modules' go.mod files.
modversion() { awk -v m="$2" '($1 == "require" && $2 == m) {print $3; exit} ($1 == m && $2 ~ /^v/) {print $2; exit}' "$1/go.mod"; }
KUBE_VERSION=${KUBE_VERSION:-$(modversion "$here/kube" k8s.io/kubernetes)}
ETCD_VERSION=$(modversion "$here/etcd" go.etcd.io/etcd/server/v3)
root=$(cd "$here/../.." && pwd)
out=${E2E_BIN_DIR:-$root/.bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION}

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
module=$here/kube-1.$minor
[[ -d $module ]] || module=$here/kube
if ! grep -qE "^require k8s\.io/kubernetes $KUBE_VERSION\$" "$module/go.mod"; then
  echo "build.sh: no tools module pins k8s.io/kubernetes $KUBE_VERSION (tests/tools/kube*/go.mod)" >&2
  exit 2
fi

# Each binary is checked on its own: a folder from before kube-controller-manager
# was added gets just that one. An existing binary is never rebuilt or
# overwritten (tests may be running it: "text file busy").
missing=()
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
  [[ -x $out/$cmd ]] || missing+=("k8s.io/kubernetes/cmd/$cmd")
done
need_etcd=false
[[ -x $out/etcd ]] || need_etcd=true
if [[ ${#missing[@]} -eq 0 && $need_etcd == false ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
# Build into a scratch folder next to the binaries and rename each into place
# (atomic, same file system, never over an existing file), so a concurrent run
# never sees a half-written binary.
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Stamp the release into the binaries, as Kubernetes' hack/lib/version.sh does,
# so `kubectl version` and the apiserver's /version tell the truth.
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
done

export CGO_ENABLED=0 GOFLAGS=-mod=mod
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "build.sh: building ${missing[*]##*/} $KUBE_VERSION into $out" >&2
  (cd "$module" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${missing[@]}") >&2
fi
if $need_etcd; then
  echo "build.sh: building etcd $ETCD_VERSION into $out" >&2
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3) >&2
fi
for f in "$tmp"/*; do
  [[ -e $out/${f##*/} ]] || mv -n "$f" "$out/"
done
echo "$out"
