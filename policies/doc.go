// Package policies holds the DittoFS StatefulSet admission policies as pure
// functions on typed apps/v1 StatefulSets: the mutation that gives every managed
// StatefulSet a persistent cache and the Retain/Retain PVC retention policy
// (SPEC §2), and the validation that rejects one without its storage (SPEC §3).
//
// Nothing here knows HTTP, JSON decoding or global state; the webhook package
// and the eval command feed the same functions, so the server and the offline
// check can never disagree.
package policies
