//go:build tools

// Package kube pins the Kubernetes release whose kube-apiserver, kube-controller-manager, kube-scheduler, kubelet
// and kubectl the end-to-end tests run against (the newest, which CI runs; kube-1.MINOR/ pin older releases). It
// is never imported: `go build` of the commands below from this module produces the binaries (see ../build.sh).
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
