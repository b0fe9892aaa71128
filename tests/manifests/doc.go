// Package manifests tests deploy/ (every kustomize overlay rendered in memory,
// as `kubectl apply -k` would; the Helm chart with the helm CLI), the
// Dockerfile and the image `make image` built (IMAGE; the tests that need it
// skip without). It is a module of its own so that kustomize never enters the
// server's module graph. Run it with `make manifests`.
package manifests
