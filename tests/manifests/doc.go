// Package manifests tests deploy/ (kustomize in memory, the chart with the helm
// CLI), the Dockerfile and the image `make image` built (IMAGE). A module of its
// own, so kustomize never enters the server's graph. Run it: `make manifests`.
package manifests
