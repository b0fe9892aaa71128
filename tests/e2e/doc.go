// Package e2e proves dittofs-webhook's user-visible behaviour on a real
// kube-apiserver, through kubectl: TestMain starts etcd and kube-apiserver
// (envtest), builds and runs the real server on loopback and installs the
// webhook configurations of deploy/default with only their clientConfig
// pointed at it. Run it with `make e2e`; README.md says what each test proves.
package e2e
