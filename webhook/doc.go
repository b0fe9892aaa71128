// Package webhook is the HTTP side of dittofs-webhook, and the only package
// that knows HTTP: the handlers of the two webhooks, TLS with hot certificate
// reload, metrics, health and the server lifecycle. What the handlers answer
// comes from package admission, the core that serve and eval share; the
// rules themselves live in package policies.
package webhook

// Version is stamped at build time with
// -ldflags "-X github.com/dittofs/dittofs-webhook/webhook.Version=v1.2.3".
var Version = "dev"
