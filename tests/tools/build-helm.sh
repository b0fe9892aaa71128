#!/usr/bin/env bash
# Builds the helm CLI (helm.sh/helm/v4/cmd/helm, the release pinned in
# helm/go.mod) into a version-keyed folder, and does nothing when it is there.
# Only the Go module proxy is needed. Prints the binary's path.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# The version is read from helm/go.mod, so bumping it there is the one edit
# that rebuilds: a stale binary is never picked up from an older folder.
version=$(cd "$here/helm" && GOFLAGS=-mod=mod go list -m -f '{{.Version}}' helm.sh/helm/v4)
out=${HELM_BIN_DIR:-$root/.bin/helm-$version}

if [[ -x $out/helm ]]; then
  echo "$out/helm"
  exit 0
fi
mkdir -p "$out"

# Stamp the release as Helm's Makefile does, so `helm version` tells the truth
# (helm lint and template also read it for the chart's kubeVersion checks).
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
# Build to a temporary name of this run's own and rename, so an interrupted
# build never leaves a half-written binary that the check above would take for
# a finished one, and concurrent runs (several checkouts sharing .bin) never
# write one file.
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$here/helm" && go build -trimpath -ldflags "$ldflags" -o "$tmp/helm" helm.sh/helm/v4/cmd/helm) >&2
mv "$tmp/helm" "$out/helm"
echo "$out/helm"
