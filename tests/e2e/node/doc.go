// Package node is the end-to-end test of the dittofs-webhook install on a real node, as an operator installs it:
// cert-manager, then `kubectl apply -k` of deploy/default with the image `make image` built, served by a kubelet.
//
// TestMain starts etcd, kube-apiserver, kube-controller-manager, a node (framework.Node: containerd, kubelet and
// kube-scheduler, a CNI bridge on 198.18.0.0/15), cert-manager's controllers and cainjector, and installs. The
// kube-apiserver calls the webhooks at the pod addresses of the Service's EndpointSlices
// (--enable-aggregator-routing). The tests run in file order; TestUninstall is last. tests/e2e/README.md says what
// each checks. Needs root and the Debian packages tests/tools/setup.sh installs; skipped in -short mode.
package node
