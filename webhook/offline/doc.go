// Package offline is dittofs-webhook without a cluster: what `eval` and
// `audit` do, in the shape of Gatekeeper's gator. Read reads manifests and
// stored objects (kubectl get -o yaml|json, multi-document, List) and pairs
// each StatefulSet with its stored version (--old), with the strict check of
// kubectl apply --validate=strict on the way; Eval, Recreate and Audit run
// the webhooks' own admission core (package admission) on them and return
// results; the Write functions render results and nothing else, and each
// result computes its exit code. The commands in cmd/dittofs-webhook only
// parse flags and wire these together.
package offline
