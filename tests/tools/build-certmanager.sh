#!/usr/bin/env bash
# Builds the test-only cert-manager program (tests/tools/certmanager: the
# controllers the dittofs-webhook install needs, and cainjector, from
# cert-manager's Go module) into a version-keyed folder, and does nothing when
# it is already there. Only the Go module proxy is needed. Prints the binary.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# The release is written once, in certmanager/go.mod.
CERT_MANAGER_VERSION=$(awk '$1 == "github.com/cert-manager/cert-manager" {print $2; exit}' "$here/certmanager/go.mod")
root=$(cd "$here/../.." && pwd)
out=${CERTMANAGER_BIN_DIR:-$root/.bin/cert-manager-$CERT_MANAGER_VERSION}
bin=$out/certmanager-e2e

# The folder is keyed by the release, but the program is ours: rebuild when
# its source or go.mod is newer than the binary.
if [[ -x $bin && -z $(find "$here/certmanager" -newer "$bin" -type f) ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$out"
(cd "$here/certmanager" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .) >&2
mv "$bin.tmp" "$bin"
echo "$bin"
