// Package certmanager is the end-to-end test of the dittofs-webhook install
// on a real node: cert-manager, then `kubectl apply -k` of deploy/default
// through an overlay that only sets the image to the one `make image` built,
// served by a kubelet — as an operator installs it.
//
// TestMain starts its own etcd and kube-apiserver (built by
// tests/tools/build.sh), kube-controller-manager (the Deployment,
// ReplicaSet, StatefulSet, EndpointSlice, volume binding, garbage-collector,
// node-lifecycle and ServiceAccount controllers), a node (framework.Node:
// containerd v2.3 with runc and a CNI bridge on 198.18.0.0/15, kubelet and
// kube-scheduler v1.37.2, the pause, busybox and webhook images imported),
// the controllers and cainjector of cert-manager v1.21 (tests/tools/certmanager),
// and installs. The kube-apiserver has --enable-aggregator-routing: it calls
// the webhooks at the pod addresses the EndpointSlice controller publishes.
// Nothing in the test plays a kubelet: the Deployment controller, the
// scheduler and the kubelet run both replicas with the manifest's settings,
// the kubelet mounts the serving Secret and probes them.
//
// The tests, in file order: TestCacheOutlivesThePod (a labelled
// StatefulSet's /data/cache survives a pod restart, a scale to 0 and back,
// and the StatefulSet's deletion and re-creation; an unlabelled control
// loses its emptyDir cache), TestCertManagerInstall (issuance, injection,
// renewals under load), TestWebhookLifecycle (rollout restart under
// 400+ admissions/s on both apiserver modes, a pod deleted, a process
// killed), TestMigrateStatefulSetOlderThanTheWebhooks (eval --recreate's
// steps run as a user runs them), TestUninstall (last).
//
// Needs root (containerd, kubelet, network interfaces) and the Debian
// packages tests/tools/setup.sh installs; skipped in -short mode.
package node
