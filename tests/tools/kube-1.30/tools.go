//go:build tools

// Package kube pins Kubernetes 1.30, the oldest release the end-to-end tests run against (`make e2e
// KUBE_VERSION=v1.30.14`; ../kube pins the newest, which CI runs). It is never imported: `go build` of the
// commands below from this module produces the binaries (see ../build.sh).
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
