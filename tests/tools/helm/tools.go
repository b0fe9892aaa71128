//go:build tools

// Package helm pins the Helm release whose CLI the manifest tests run (helm
// lint, helm template on deploy/helm/dittofs-webhook). It is never imported:
// `go build` of the command below from this module produces the binary (see
// ../build-helm.sh). A module of its own keeps Helm's dependency tree out of
// every other module.
package helm

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
