#!/usr/bin/env bash
# Builds containerd, its runc shim (containerd-shim-runc-v2) and ctr from the
# containerd Go module (tests/tools/containerd pins the release) into a
# version-keyed folder, and does nothing when they are there. The node of the
# end-to-end tests runs them (Kubernetes 1.36+ needs containerd 2.2 or later;
# Debian 12 ships 1.6). Only the Go module proxy is needed. Prints the folder.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(awk '$1 == "require" && $2 == "github.com/containerd/containerd/v2" {print $3}' "$here/containerd/go.mod")
out=${CONTAINERD_BIN_DIR:-$root/.bin/containerd-$version}
cmds=(containerd containerd-shim-runc-v2 ctr)

missing=()
for c in "${cmds[@]}"; do
  [[ -x $out/$c ]] || missing+=("github.com/containerd/containerd/v2/cmd/$c")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build-containerd.sh: building ${missing[*]##*/} $version into $out" >&2
# No cgo: the btrfs snapshotter drops out (overlayfs and native remain).
ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$version"
(cd "$here/containerd" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${missing[@]}") >&2
for f in "$tmp"/*; do
  [[ -e $out/${f##*/} ]] || mv -n "$f" "$out/"
done
echo "$out"
