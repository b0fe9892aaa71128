//go:build tools

// Package containerd pins the containerd release the node of the end-to-end
// tests runs (containerd, its runc shim and ctr; see ../build-node.sh).
// Kubernetes 1.36+ needs containerd 2.2 or later; Debian 12 ships 1.6.
package containerd

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
