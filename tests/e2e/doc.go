// Package e2e proves dittofs-webhook's user-visible behaviour on a real
// kube-apiserver, through kubectl.
//
// TestMain starts etcd and kube-apiserver (controller-runtime's envtest, with
// binaries built from the Kubernetes Go modules by tests/tools/build.sh), builds
// and runs the real dittofs-webhook binary on loopback with a development
// certificate in a Kubernetes-Secret-style directory, and installs the
// webhook configurations rendered from deploy/default with only their
// clientConfig pointed at that server. Each test then drives the built kubectl
// binary as a user would and checks what kubectl printed and what was stored.
//
// Run it with `make e2e`, or `cd tests/e2e && go test -count=1 -v ./...`;
// README.md says what each test proves.
package e2e
