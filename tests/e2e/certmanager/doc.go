// Package certmanager is the end-to-end test of the dittofs-webhook install
// with real cert-manager: `kubectl apply -k deploy/default`, unchanged, on a
// kube-apiserver that calls the webhook through its Service, as in a cluster.
//
// TestMain starts its own etcd and kube-apiserver (built by
// tests/tools/build.sh), the controllers and cainjector of cert-manager v1.21
// (tests/tools/certmanager, built by tests/tools/build-certmanager.sh), and a
// network namespace joined to this machine by a veth pair, where a podman
// container of the image (make image) runs as a kubelet runs deploy/default's
// Deployment, every setting read from the rendered manifest. The
// kube-apiserver has --enable-aggregator-routing, so it resolves the webhook
// configurations' service references through the EndpointSlice the harness
// gives the Service: the namespace's address. There is no kubelet: the harness
// writes the serving Secret into a directory as a Secret volume is written,
// keeps it current, polls the probes, and plays the Deployment and
// EndpointSlice controllers for a rolling update (each replica in a namespace
// of its own) on two kube-apiservers — 1.37's defaults, and a second one on
// the same etcd without WebhookRoundTripLoadBalancing — and for a replica
// killed with SIGKILL.
//
// Needs root (network namespaces) and iproute2; skipped in -short mode.
package certmanager
