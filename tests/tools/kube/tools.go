//go:build tools

// Package kube pins the Kubernetes release whose kube-apiserver and kubectl the
// end-to-end tests run against. It is never imported: `go build` of the two
// commands below from this module produces the binaries (see ../build.sh).
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
