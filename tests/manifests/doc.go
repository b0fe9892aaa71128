// Package manifests tests the installation manifests under deploy/, the
// Dockerfile and the image it builds: it renders every kustomize overlay in
// memory, as `kubectl apply -k` would, and the Helm chart with the helm CLI
// (built by tests/tools/build-helm.sh), and checks the properties users depend
// on, the same checks on both. The image is the one `make image` built, named
// by IMAGE (`make manifests` sets it); the tests that run the server binary
// run the image's own, and skip without IMAGE.
//
// It is a module of its own so that kustomize and its dependencies never enter
// the server's module graph. Run it with `make manifests`, or
// `IMAGE=dittofs-webhook:TAG go test ./...` from this directory.
package manifests
