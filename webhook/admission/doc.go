// Package admission is the admission core that `serve` and `eval` share: it
// decodes an AdmissionReview (or a manifest) into the policies' StatefulSet
// view with the Go team's JSON library, screens what the policies need not
// see, runs the policies, builds the response, and evaluates a StatefulSet
// offline exactly as the apiserver would call the two webhooks. It knows no
// HTTP; package webhook serves it.
package admission
