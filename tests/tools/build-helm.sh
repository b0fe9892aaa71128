#!/usr/bin/env bash
# Builds the helm CLI (helm.sh/helm/v4/cmd/helm, the release below) into a
# version-keyed folder, and does nothing when it is there. Only the Go module
# proxy is needed. Prints the binary's path.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# The helm release, written here only. Bumping it is the one edit that
# rebuilds (the folder is keyed by it): a stale binary is never picked up.
version=v4.3.2
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

export CGO_ENABLED=0
# Build to a temporary name of this run's own and rename, so an interrupted
# build never leaves a half-written binary that the check above would take for
# a finished one, and concurrent runs (several checkouts sharing .bin) never
# write one file.
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Helm's go.mod has no replace directives, so `go install …@version` builds it
# with exactly the dependencies that release pins (checked against go.sum and
# the checksum database): no tools module of ours is needed.
GOBIN=$tmp go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v4/cmd/helm@$version" >&2
mv "$tmp/helm" "$out/helm"
echo "$out/helm"
