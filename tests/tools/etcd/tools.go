//go:build tools

// Package etcd pins the etcd release the end-to-end tests run (see ../build.sh).
package etcd

import _ "go.etcd.io/etcd/server/v3"
