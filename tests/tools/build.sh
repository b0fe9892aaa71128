#!/usr/bin/env bash
# Builds the control-plane binaries the end-to-end tests run — kube-apiserver and
# kubectl from the k8s.io/kubernetes Go module, etcd from go.etcd.io/etcd/server —
# into a version-keyed folder, and does nothing when that folder is complete.
# Only the Go module proxy is needed. Prints the folder (KUBEBUILDER_ASSETS).
set -euo pipefail

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${E2E_BIN_DIR:-$root/.bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION}

if [[ -x $out/kube-apiserver && -x $out/kubectl && -x $out/etcd ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"

# Stamp the release into the binaries, as Kubernetes' hack/lib/version.sh does,
# so `kubectl version` and the apiserver's /version tell the truth.
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
done

export CGO_ENABLED=0 GOFLAGS=-mod=mod
(cd "$here/kube" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3) >&2
echo "$out"
