#!/usr/bin/env bash
# Builds containerd, its runc shim (containerd-shim-runc-v2) and ctr from the
# containerd Go module (the release below) into a
# version-keyed folder, and does nothing when they are there. The node of the
# end-to-end tests runs them (Kubernetes 1.36+ needs containerd 2.2 or later;
# Debian 12 ships 1.6). Only the Go module proxy is needed. Prints the folder.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# The containerd release, written here only (the folder is keyed by it).
version=v2.3.7
out=${CONTAINERD_BIN_DIR:-$root/.bin/containerd-$version}
cmds=(containerd containerd-shim-runc-v2 ctr)

missing=()
for c in "${cmds[@]}"; do
  [[ -x $out/$c ]] || missing+=("github.com/containerd/containerd/v2/cmd/$c@$version")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build-containerd.sh: building ${missing[*]} into $out" >&2
# No cgo: the btrfs snapshotter drops out (overlayfs and native remain).
ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$version"
# containerd's go.mod has no replace directives, so `go install …@version`
# builds exactly the dependencies that release pins: no tools module needed.
CGO_ENABLED=0 GOBIN=$tmp go install -trimpath -ldflags "$ldflags" "${missing[@]}" >&2
for f in "$tmp"/*; do
  [[ -e $out/${f##*/} ]] || mv -n "$f" "$out/"
done
echo "$out"
