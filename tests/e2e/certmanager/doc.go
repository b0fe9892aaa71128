// Package certmanager is the end-to-end test of the dittofs-webhook install
// with real cert-manager: `kubectl apply -k deploy/default`, unchanged, on a
// kube-apiserver that calls the webhook through its Service, as in a cluster.
//
// TestMain starts its own etcd and kube-apiserver (built by
// tests/tools/build.sh), the controllers and cainjector of cert-manager v1.21
// (tests/tools/certmanager, built by tests/tools/build-certmanager.sh), and a
// network namespace joined to this machine by a veth pair, where
// `dittofs-webhook serve` runs. The kube-apiserver has
// --enable-aggregator-routing, so it resolves the webhook configurations'
// service references through the EndpointSlice the harness gives the Service:
// the namespace's address. There is no kubelet: the harness writes the
// serving Secret into a directory as a Secret volume is written, and keeps it
// current.
//
// Needs root (network namespaces) and iproute2; skipped in -short mode.
package certmanager
