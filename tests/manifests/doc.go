// Package manifests tests the installation manifests under deploy/ and the
// Dockerfile: it renders every kustomize overlay in memory, as
// `kubectl apply -k` would, and the Helm chart with the helm CLI (built by
// tests/tools/build-helm.sh), and checks the properties users depend on, the
// same checks on both.
//
// It is a module of its own so that kustomize and its dependencies never enter
// the server's module graph. Run it with `go test ./...` from this directory.
package manifests
