// Package webhook is the HTTP side of dittofs-webhook, and the only package
// that knows HTTP: AdmissionReview decoding and encoding, responses, TLS with
// hot certificate reload, metrics, health and the server lifecycle. The
// policies themselves live in package policies.
package webhook

// Version is stamped at build time with
// -ldflags "-X github.com/dittofs/dittofs-webhook/webhook.Version=v1.2.3".
var Version = "dev"
