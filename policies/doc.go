// Package policies holds the DittoFS StatefulSet admission policies as pure
// functions: the mutation that gives every managed StatefulSet a persistent
// cache and the Retain/Retain PVC retention policy (SPEC §2), and the
// validation that rejects one without its storage (SPEC §3).
//
// The functions work on a narrow view of an apps/v1 StatefulSet (StatefulSet
// in statefulset.go): the few fields the rules read, under apps/v1's JSON
// names, plus each volumeClaimTemplate's raw bytes for U1's verbatim
// carry-over. It is not the typed k8s.io/api StatefulSet: the webhook/admission
// decoder fills it from the AdmissionReview's object, and a mutation is a JSON
// patch against that object, so fields the view does not hold — including
// those of a newer Kubernetes — are never touched.
//
// Every rule ID and mutation ID is a constant here (names.go); tests build
// their patterns from them. Nothing here knows HTTP, JSON decoding of a
// review or global state; the webhook package and the eval
// command feed the same functions, so the server and the offline check can
// never disagree.
package policies
